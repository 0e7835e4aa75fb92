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
  // The new-lesion fields only matter when "New lesion" is chosen.
  const lesion = document.getElementById("id_lesion");
  const fields = document.getElementById("new-lesion-fields");
  if (lesion && fields) {
    const sync = () => { fields.hidden = lesion.value !== "new"; };
    lesion.addEventListener("change", sync);
    sync();
  }
});
