"""User reports: intake, campaign matching, actions and metrics."""
