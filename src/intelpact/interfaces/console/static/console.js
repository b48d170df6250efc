// intelpact console: progressive enhancement only. Reading works without JavaScript.
// 1. The publish form's live banner preview (asks the node: /publish/preview).
// 2. An upload progress bar for large bundles (XMLHttpRequest upload events).
"use strict";
(function () {
  var form = document.getElementById("publish-form");
  if (!form) { return; }
  var preview = document.getElementById("preview");
  var note = document.getElementById("preview-note");
  function params() {
    var out = new URLSearchParams();
    ["level"].forEach(function (n) { out.append(n, form.elements[n].value); });
    ["rel", "caveat", "community"].forEach(function (n) {
      form.querySelectorAll("input[name=" + n + "]:checked").forEach(function (el) {
        out.append(n, el.value);
      });
    });
    return out;
  }
  var latest = 0;  // answers may arrive out of order: only the newest is shown
  function refresh() {
    var asked = ++latest;
    fetch("/publish/preview?" + params().toString(), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (asked !== latest) { return; }
        if (data.error) { note.textContent = data.error; return; }
        preview.textContent = data.banner;
        preview.className = "mark preview band-" + data.band;
        note.textContent = data.rel_to ? "REL TO " + data.rel_to : "No REL TO restriction";
      });
  }
  form.addEventListener("change", function (e) {
    if (e.target.name !== "bundle") { refresh(); }
  });
  form.addEventListener("submit", function (e) {
    var file = form.elements.bundle && form.elements.bundle.files[0];
    var kind = form.querySelector("input[name=kind]:checked");
    if (!file || !kind || kind.value !== "bundle") { return; }
    e.preventDefault();
    var bar = document.getElementById("upload-progress");
    var said = document.getElementById("upload-note");
    bar.hidden = false;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable) {
        bar.value = Math.round(100 * ev.loaded / ev.total);
        bar.textContent = bar.value + "%";
        said.textContent = "Uploading: " + bar.value + "%";
      }
    });
    xhr.upload.addEventListener("load", function () {
      said.textContent = "Uploaded; the node is checking, signing and storing the objects…";
    });
    xhr.addEventListener("load", function () {
      document.open(); document.write(xhr.responseText); document.close();
    });
    xhr.send(new FormData(form));
  });
})();
