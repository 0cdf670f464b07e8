"""User reports: intake, campaign matching, analysis, actions and metrics.

A user reports a message (REST, the banner's signed link, an add-in, or by
forwarding it to the reporting address). The report is matched to the
copies mailward delivered, joined to the campaign it belongs to, and the
campaign is judged once by re-running the whole pipeline with today's
intelligence. The verdict is applied to every copy in every mailbox and the
reporters are told the outcome. See ``service`` for the flow.
"""
