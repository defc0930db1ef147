// minipaas docs: search over page titles and headings, and the menu button on narrow screens.
// Plain JavaScript, no libraries; every URL is relative to the site root given by <body data-root>.
(function () {
  "use strict";

  var body = document.body;
  var root = body.getAttribute("data-root") || "";
  var input = document.getElementById("ds-search");
  var results = document.getElementById("ds-results");
  var menu = document.getElementById("ds-menu-button");
  var index = null;
  var loading = null;
  var MAX_RESULTS = 25;

  body.classList.add("ds-js");

  if (menu) {
    menu.addEventListener("click", function () {
      var open = body.classList.toggle("ds-menu-open");
      menu.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  if (!input || !results) {
    return;
  }

  function load() {
    if (!loading) {
      loading = fetch(root + "assets/search-index.json")
        .then(function (response) {
          if (!response.ok) {
            throw new Error("search index: HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (data) {
          index = Array.isArray(data) ? data : [];
        })
        .catch(function () {
          index = [];
        });
    }
    return loading;
  }

  function matchesAll(haystack, terms) {
    var lower = haystack.toLowerCase();
    return terms.every(function (term) {
      return lower.indexOf(term) !== -1;
    });
  }

  function search(query) {
    var terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    var titles = [];
    var headings = [];
    if (!terms.length) {
      return [];
    }
    index.forEach(function (page) {
      if (matchesAll(page.title, terms)) {
        titles.push({ label: page.title, context: "", url: page.url });
      }
      (page.headings || []).forEach(function (heading) {
        if (matchesAll(heading.text, terms)) {
          headings.push({ label: heading.text, context: page.title, url: page.url + "#" + heading.id });
        }
      });
    });
    return titles.concat(headings).slice(0, MAX_RESULTS);
  }

  function show(hits, query) {
    results.textContent = "";
    if (!query.trim()) {
      results.hidden = true;
      return;
    }
    if (!hits.length) {
      var empty = document.createElement("li");
      empty.className = "ds-no-results";
      empty.textContent = "No results for “" + query.trim() + "”";
      results.appendChild(empty);
    }
    hits.forEach(function (hit) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      var title = document.createElement("span");
      link.href = root + hit.url;
      title.className = "ds-hit-title";
      title.textContent = hit.label;
      link.appendChild(title);
      if (hit.context) {
        var page = document.createElement("span");
        page.className = "ds-hit-page";
        page.textContent = hit.context;
        link.appendChild(page);
      }
      item.appendChild(link);
      results.appendChild(item);
    });
    results.hidden = false;
  }

  function update() {
    var query = input.value;
    load().then(function () {
      if (input.value === query) {
        show(search(query), query);
      }
    });
  }

  input.addEventListener("focus", load);
  input.addEventListener("input", update);
  input.addEventListener("keydown", function (event) {
    var first = results.querySelector("a");
    if (event.key === "Enter" && first) {
      event.preventDefault();
      first.click();
    } else if (event.key === "ArrowDown" && first) {
      event.preventDefault();
      first.focus();
    } else if (event.key === "Escape") {
      input.value = "";
      show([], "");
    }
  });
  results.addEventListener("keydown", function (event) {
    var links = Array.prototype.slice.call(results.querySelectorAll("a"));
    var at = links.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && at >= 0 && at < links.length - 1) {
      event.preventDefault();
      links[at + 1].focus();
    } else if (event.key === "ArrowUp" && at >= 0) {
      event.preventDefault();
      (at === 0 ? input : links[at - 1]).focus();
    } else if (event.key === "Escape") {
      input.focus();
    }
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      input.focus();
    }
  });
  if (input.value) {
    update();
  }
})();
