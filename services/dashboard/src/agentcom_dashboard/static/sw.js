// Service worker: shows AgentCom pushes (critical alerts, dead-lettered tasks).
self.addEventListener("push", event => {
  let msg = { title: "AgentCom", body: "" };
  try { msg = event.data.json(); } catch (_err) { msg.body = event.data ? event.data.text() : ""; }
  event.waitUntil(self.registration.showNotification(msg.title, { body: msg.body, tag: msg.tag }));
});
self.addEventListener("notificationclick", event => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow("/"));
});
