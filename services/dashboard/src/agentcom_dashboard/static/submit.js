// The "new task" form (admins only; loaded after app.js, whose `state`, `h`, `toast`,
// `upsertTask` and `renderTasks` it uses). POST /ui/tasks submits it to the queue; a 422 names
// the refused field and its message is shown beside that field.
"use strict";

const submitDialog = document.getElementById("submit-dialog");
const submitForm = document.getElementById("submit-form");

function clearFieldErrors() {
  for (const el of submitForm.querySelectorAll("[data-error]")) el.textContent = "";
  for (const el of submitForm.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

function showFieldError(field, detail) {
  const slot = submitForm.querySelector(`[data-error="${field}"]`) || submitForm.querySelector('[data-error="form"]');
  slot.textContent = detail;
  const input = submitForm.elements.namedItem(field);
  if (input && input.setAttribute) { input.setAttribute("aria-invalid", "true"); input.focus(); }
}

async function submitTask(event) {
  event.preventDefault();
  clearFieldErrors();
  const body = Object.fromEntries(new FormData(submitForm).entries());
  const button = document.getElementById("submit-task");
  button.disabled = true;
  try {
    const res = await fetch("/ui/tasks", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.csrf || "", "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const reply = await res.json().catch(() => ({}));
    if (!res.ok) { showFieldError(reply.field || "form", reply.detail || `the dashboard answered ${res.status}`); return; }
    upsertTask(reply); renderTasks();
    submitForm.reset();
    submitDialog.close();
    toast(`submitted ${reply.id}`);
  } finally { button.disabled = false; }
}

document.getElementById("new-task").addEventListener("click", () => { clearFieldErrors(); submitDialog.showModal(); });
submitForm.addEventListener("submit", submitTask);
