// kvbench report.html: tooltips for the charts' markers and cells (their data-tip attribute).
(function () {
  "use strict";
  var tip = document.createElement("div");
  tip.id = "kvbench-tip";
  document.body.appendChild(tip);
  function owner(node) {
    while (node && node !== document) {
      if (node.getAttribute && node.getAttribute("data-tip") !== null) {
        return node;
      }
      node = node.parentNode;
    }
    return null;
  }
  function place(event) {
    var x = event.clientX + 14;
    var y = event.clientY + 14;
    var box = tip.getBoundingClientRect();
    if (x + box.width > window.innerWidth) {
      x = event.clientX - box.width - 10;
    }
    if (y + box.height > window.innerHeight) {
      y = event.clientY - box.height - 10;
    }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  document.addEventListener("mouseover", function (event) {
    var node = owner(event.target);
    if (!node) {
      return;
    }
    tip.textContent = node.getAttribute("data-tip");
    tip.style.display = "block";
    place(event);
  });
  document.addEventListener("mousemove", function (event) {
    if (tip.style.display === "block") {
      place(event);
    }
  });
  document.addEventListener("mouseout", function (event) {
    var node = owner(event.target);
    if (node && !node.contains(event.relatedTarget)) {
      tip.style.display = "none";
    }
  });
})();
