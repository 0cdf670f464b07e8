// The mailward "Report phishing" add-in: sends the open message to
// POST /api/v1/reports with the user's reporter token (kept in the
// add-in's roaming settings). The site address is where this file is served.
"use strict";

var MAILWARD = window.location.origin;
var TOKEN_KEY = "mailwardReportToken";

function notify(text, isError) {
  var item = Office.context.mailbox.item;
  item.notificationMessages.replaceAsync("mailwardReport", {
    type: isError ? Office.MailboxEnums.ItemNotificationMessageType.ErrorMessage
                  : Office.MailboxEnums.ItemNotificationMessageType.InformationalMessage,
    message: text.slice(0, 150), icon: "Icon.64", persistent: false
  });
}

function send(body, event) {
  var token = Office.context.roamingSettings.get(TOKEN_KEY);
  if (!token) {
    notify("Set your report token first (Report settings).", true);
    event.completed();
    return;
  }
  fetch(MAILWARD + "/api/v1/reports", {
    method: "POST",
    headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    body: JSON.stringify(body)
  }).then(function (response) {
    return response.json().then(function (data) {
      if (response.ok) {
        notify("Thank you: your security team is checking this message.", false);
      } else {
        notify("Not reported: " + (data.detail || response.status), true);
      }
    });
  }).catch(function () {
    notify("Could not reach the security service; try again later.", true);
  }).then(function () { event.completed(); });
}

function reportMessage(event) {
  var item = Office.context.mailbox.item;
  if (item.getAsFileAsync) {
    item.getAsFileAsync(function (result) {
      if (result.status === Office.AsyncResultStatus.Succeeded) {
        send({message: result.value, kind: "phish"}, event);
      } else {
        send({message_id: item.internetMessageId, kind: "phish"}, event);
      }
    });
  } else {
    send({message_id: item.internetMessageId, kind: "phish"}, event);
  }
}

Office.onReady(function () {
  if (Office.actions && Office.actions.associate) {
    Office.actions.associate("reportMessage", reportMessage);
  }
  var save = document.getElementById("save");
  if (save) {
    save.addEventListener("click", function () {
      var value = document.getElementById("token").value.trim();
      Office.context.roamingSettings.set(TOKEN_KEY, value);
      Office.context.roamingSettings.saveAsync(function () {
        document.getElementById("state").textContent = "Saved.";
      });
    });
  }
});
