// llm-proxy admin console: the copy button of a newly created token. The
// console works without it; nothing else runs in the page.
"use strict";
document.addEventListener("click", function (ev) {
  var button = ev.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  var input = document.getElementById(button.getAttribute("data-copy"));
  if (!input) {
    return;
  }
  input.focus();
  input.select();
  var done = function () {
    button.textContent = "Copied";
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, function () {
      button.textContent = "Press Ctrl+C";
    });
  } else if (document.execCommand("copy")) {
    done();
  } else {
    button.textContent = "Press Ctrl+C";
  }
});
