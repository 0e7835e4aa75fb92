// Drag and drop onto the upload form's file input (the input itself stays
// usable with keyboard and file picker).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-drop-zone]").forEach((zone) => {
    const input = document.getElementById(zone.dataset.dropZone);
    const list = zone.querySelector("[data-file-list]");
    const show = () => {
      if (list) list.textContent = Array.from(input.files).map((f) => f.name).join(", ") || "No files chosen";
    };
    ["dragenter", "dragover"].forEach((name) =>
      zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragover"); }));
    ["dragleave", "drop"].forEach((name) =>
      zone.addEventListener(name, () => zone.classList.remove("dragover")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      const transfer = new DataTransfer();
      Array.from(input.files).forEach((f) => transfer.items.add(f));
      Array.from(event.dataTransfer.files).forEach((f) => transfer.items.add(f));
      input.files = transfer.files;
      show();
    });
    input.addEventListener("change", show);
  });
  // After a failed submit the error summary takes the focus (a screen reader
  // reads it; Tab goes on to its links), and each link focuses its field.
  const summary = document.querySelector("[data-error-summary]");
  if (summary) summary.focus();
  document.querySelectorAll("[data-error-link]").forEach((link) => {
    link.addEventListener("click", (event) => {
      const field = document.getElementById(link.getAttribute("href").slice(1));
      if (!field) return;
      event.preventDefault();
      const details = field.closest("details");
      if (details) details.open = true;
      field.focus();
      field.scrollIntoView({ block: "center" });
    });
  });
  // Keyboard shortcuts listed on the page ([data-shortcut] names the key,
  // data-target the control): never while typing in a field or with a modifier.
  const shortcuts = document.querySelectorAll("[data-shortcut]");
  if (shortcuts.length) {
    document.addEventListener("keydown", (event) => {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
      const here = event.target;
      if (here.isContentEditable || here.closest("textarea, select, input:not([type=radio]):not([type=checkbox])")) return;
      const key = event.key.toLowerCase();
      const entry = Array.from(shortcuts).find((item) => item.dataset.shortcut === key);
      const target = entry && document.querySelector(entry.dataset.target);
      if (!target) return;
      event.preventDefault();
      if (target.matches("input[type=radio], input[type=checkbox]")) {
        // A review form folded away under a saved review stays folded: no
        // shortcut invites a second review by accident.
        const details = target.closest("details");
        if (details && !details.open) return;
        target.checked = true;
        target.focus();
      } else {
        target.click();
      }
    });
  }
  // The new-lesion fields only matter when "New lesion" is chosen.
  const lesion = document.getElementById("id_lesion");
  const fields = document.getElementById("new-lesion-fields");
  if (lesion && fields) {
    const sync = () => { fields.hidden = lesion.value !== "new"; };
    lesion.addEventListener("change", sync);
    sync();
  }
});
