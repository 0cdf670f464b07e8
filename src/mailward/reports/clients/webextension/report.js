// The mailward browser extension: sends the raw message shown in the
// current tab (or a Message-ID) to POST /api/v1/reports with the user's
// reporter token, kept in the extension's local storage.
"use strict";

const api = typeof browser !== "undefined" ? browser : chrome;
const state = (text) => { document.getElementById("state").textContent = text; };
const MAX_BYTES = 10 * 1024 * 1024;

async function settings() {
  return await api.storage.local.get(["server", "token"]);
}

async function pageText() {
  const [tab] = await api.tabs.query({active: true, currentWindow: true});
  const [result] = await api.scripting.executeScript({
    target: {tabId: tab.id},
    func: () => (document.querySelector("pre") || document.body).innerText
  });
  return result ? result.result : "";
}

function looksLikeMessage(text) {
  return /^(Received|Return-Path|From|Message-ID|Delivered-To):/im.test(text.slice(0, 4096));
}

async function report() {
  const {server, token} = await settings();
  if (!server || !token) {
    state("Set the mailward address and your report token first.");
    return;
  }
  const messageId = document.getElementById("messageId").value.trim();
  let request;
  if (messageId) {
    request = {headers: {"Content-Type": "application/json"},
               body: JSON.stringify({message_id: messageId, kind: "phish"})};
  } else {
    const text = await pageText();
    if (!looksLikeMessage(text)) {
      state("This page does not show a raw message: open \"Show original\" first.");
      return;
    }
    const raw = text.replace(/\r?\n/g, "\r\n");
    if (raw.length > MAX_BYTES) {
      state("The message is too large to report this way.");
      return;
    }
    request = {headers: {"Content-Type": "message/rfc822"}, body: raw};
  }
  request.method = "POST";
  request.headers["Authorization"] = "Bearer " + token;
  try {
    const response = await fetch(server.replace(/\/+$/, "") + "/api/v1/reports", request);
    const data = await response.json();
    state(response.ok ? "Thank you: your security team is checking this message."
                      : "Not reported: " + (data.detail || response.status));
  } catch (error) {
    state("Could not reach the security service; try again later.");
  }
}

async function save() {
  const server = document.getElementById("server").value.trim();
  const token = document.getElementById("token").value.trim();
  if (server && !/^https:\/\//.test(server) && !/^http:\/\/(localhost|127\.0\.0\.1)/.test(server)) {
    state("The address must start with https://");
    return;
  }
  await api.storage.local.set({server, token});
  state("Saved.");
}

document.addEventListener("DOMContentLoaded", async () => {
  const options = window.location.hash === "#options";
  document.getElementById("report").hidden = options;
  const {server} = await settings();
  if (server) document.getElementById("server").value = server;
  document.getElementById("send").addEventListener("click", report);
  document.getElementById("save").addEventListener("click", save);
});
