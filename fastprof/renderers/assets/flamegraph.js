/*
 * fastprof flame graph: an icicle (top-down) flame graph drawn on a canvas.
 *
 *   window.FastprofFlame.mount(element, data, options) -> controller
 *
 * `data` is what fastprof.renderers.html.flame_data() produces: one column per field, nodes in
 * pre-order (node 0 is the root, every parent comes before its children, siblings heaviest
 * first). Strings (function names, paths) come from the profiled program and are untrusted:
 * they only ever reach the page through canvas fillText and DOM textContent.
 *
 * Only nodes at least half a pixel wide are laid out, and only the rows in view are drawn, so a
 * profile with tens of thousands of nodes stays responsive.
 *
 * Differential mode: when `data.diff` is present ({a: [...], b: [...]}, each node's inclusive
 * time in profile A and in profile B), `total` is a + b, so a frame that exists in only one of
 * the two still has room, and each frame is coloured by b - a: red where B spent more time, blue
 * where it spent less. `options.labels` names the two sides ({a: "A", b: "B"}), `options.unit`
 * is appended to the times in the tooltip (" per request").
 */
(function (global) {
  "use strict";

  var MIN_WIDTH = 0.5; // px: narrower nodes, and everything under them, are skipped
  var FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
  var AWAIT = -1; // hit kind for the synthetic [await] block under a frame

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ms(seconds) {
    return (seconds * 1000).toFixed(2) + " ms";
  }

  function percent(part, whole) {
    return whole > 0 ? ((part / whole) * 100).toFixed(1) + "%" : "0.0%";
  }

  function hash(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
    return Math.abs(h);
  }

  function Flame(element, data, options) {
    this.options = options || {};
    this.rowHeight = this.options.rowHeight || 18;
    this.root = element;
    this.strings = data.strings;
    this.fn = data.fn;
    this.file = data.file;
    this.line = data.line;
    this.total = data.total;
    this.self = data.self;
    this.wait = data.wait;
    this.lib = data.lib;
    this.parent = data.parent;
    this.n = data.parent.length;
    this.rootTotal = this.n ? this.total[0] : 0;
    this.hideLibrary = !!this.options.hideLibrary;
    this.diff = data.diff || null;
    this.labels = this.options.labels || { a: "A", b: "B" };
    this.unit = this.options.unit || "";
    if (this.diff) {
      var biggest = 0;
      for (var d = 1; d < this.n; d++) {
        var change = Math.abs(this.diff.b[d] - this.diff.a[d]);
        if (change > biggest) biggest = change;
      }
      this.biggestChange = biggest;
    }
    this.zoomed = 0;
    this.query = "";
    this.matched = null;
    this.hits = [];
    this.rows = 1;
    this.pending = false;
    this.buildDom();
    this.buildView();
    this.setZoom(0);
  }

  Flame.prototype.buildDom = function () {
    var self = this;
    var root = this.root;
    root.classList.add("fpf");
    while (root.firstChild) root.removeChild(root.firstChild);

    var bar = el("div", "fpf-toolbar");
    this.searchBox = el("input", "fpf-search");
    this.searchBox.type = "search";
    this.searchBox.placeholder = "Search functions and files";
    this.searchBox.setAttribute("aria-label", "Search functions and files");
    this.matchInfo = el("span", "fpf-matches");
    var toggle = el("label", "fpf-toggle");
    this.libBox = el("input");
    this.libBox.type = "checkbox";
    this.libBox.checked = this.hideLibrary;
    toggle.appendChild(this.libBox);
    toggle.appendChild(document.createTextNode(" Hide library frames"));
    var legend = el("span", "fpf-legend");
    var keys = this.diff
      ? [["fpf-swatch-gain", "more time in " + this.labels.b + " "],
         ["fpf-swatch-loss", "less time in " + this.labels.b + " "],
         ["fpf-swatch-same", "unchanged"]]
      : [["fpf-swatch-user", "your code "], ["fpf-swatch-lib", "library "],
         ["fpf-swatch-await", "await"]];
    for (var k = 0; k < keys.length; k++) {
      legend.appendChild(el("span", "fpf-swatch " + keys[k][0]));
      legend.appendChild(document.createTextNode(keys[k][1]));
    }
    bar.appendChild(this.searchBox);
    bar.appendChild(this.matchInfo);
    bar.appendChild(toggle);
    bar.appendChild(legend);

    this.crumbs = el("nav", "fpf-crumbs");
    this.crumbs.setAttribute("aria-label", "Zoom path");
    this.scroller = el("div", "fpf-scroll");
    this.sizer = el("div", "fpf-sizer");
    this.canvas = el("canvas", "fpf-canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "Flame graph");
    this.canvas.tabIndex = 0; // focusable, so Escape (zoom out fully) reaches the component
    this.sizer.appendChild(this.canvas);
    this.scroller.appendChild(this.sizer);
    this.tip = el("div", "fpf-tip");
    this.tip.hidden = true;
    this.empty = el("p", "fpf-empty", "No samples were recorded.");
    this.empty.hidden = this.rootTotal > 0;

    root.appendChild(bar);
    root.appendChild(this.crumbs);
    root.appendChild(this.scroller);
    root.appendChild(this.empty);
    root.appendChild(this.tip);

    this.listeners = [];
    function on(target, type, handler) {
      target.addEventListener(type, handler);
      self.listeners.push([target, type, handler]);
    }
    on(this.searchBox, "input", function () {
      self.search(self.searchBox.value);
    });
    on(this.libBox, "change", function () {
      self.setHideLibrary(self.libBox.checked);
    });
    on(this.scroller, "scroll", function () {
      self.tip.hidden = true;
      self.schedule();
    });
    on(this.canvas, "mousemove", function (event) {
      self.hover(event);
    });
    on(this.canvas, "mouseleave", function () {
      self.tip.hidden = true;
    });
    on(this.canvas, "click", function (event) {
      self.click(event);
    });
    on(root, "keydown", function (event) {
      if (event.key === "Escape" && event.target !== self.searchBox) self.setZoom(0);
    });
    on(window, "resize", function () {
      self.layout();
    });
    if (window.matchMedia) {
      this.dark = window.matchMedia("(prefers-color-scheme: dark)");
      if (this.dark.addEventListener) {
        on(this.dark, "change", function () {
          self.schedule();
        });
      }
    }
    if (window.ResizeObserver) {
      this.resizer = new ResizeObserver(function () {
        self.layout();
      });
      this.resizer.observe(this.scroller);
    }
  };

  // The visible tree: with library frames hidden, a hidden frame's visible descendants hang
  // under its nearest visible ancestor. anchor[i] is i itself or that ancestor.
  Flame.prototype.buildView = function () {
    var n = this.n;
    var kids = new Array(n);
    var anchor = new Int32Array(n);
    var hide = this.hideLibrary;
    var i;
    for (i = 1; i < n; i++) {
      var up = anchor[this.parent[i]];
      if (hide && this.lib[i]) {
        anchor[i] = up;
        continue;
      }
      anchor[i] = i;
      (kids[up] || (kids[up] = [])).push(i);
    }
    if (hide) {
      var total = this.total;
      var heavier = function (a, b) {
        return total[b] - total[a];
      };
      for (i = 0; i < n; i++) if (kids[i] && kids[i].length > 1) kids[i].sort(heavier);
    }
    this.kids = kids;
    this.anchor = anchor;
  };

  Flame.prototype.visibleParent = function (i) {
    return i === 0 ? -1 : this.anchor[this.parent[i]];
  };

  Flame.prototype.label = function (i) {
    return i === 0 ? "all" : this.strings[this.fn[i]];
  };

  Flame.prototype.where = function (i) {
    var file = this.strings[this.file[i]];
    if (!file) return "";
    return this.line[i] > 0 ? file + ":" + this.line[i] : file;
  };

  Flame.prototype.setZoom = function (i) {
    this.zoomed = this.anchor[i];
    this.renderCrumbs();
    this.scroller.scrollTop = 0;
    this.layout();
  };

  Flame.prototype.setHideLibrary = function (hide) {
    this.hideLibrary = !!hide;
    this.libBox.checked = this.hideLibrary;
    this.buildView();
    this.setZoom(this.zoomed);
  };

  Flame.prototype.search = function (text) {
    this.query = (text || "").trim().toLowerCase();
    if (this.searchBox.value !== (text || "")) this.searchBox.value = text || "";
    this.matched = null;
    this.matchInfo.textContent = "";
    if (this.query) {
      var matched = new Uint8Array(this.n);
      var covered = new Uint8Array(this.n); // matched, or under a matched frame
      var count = 0;
      var time = 0;
      for (var i = 1; i < this.n; i++) {
        var name = this.strings[this.fn[i]].toLowerCase();
        var file = this.strings[this.file[i]].toLowerCase();
        var hit = name.indexOf(this.query) >= 0 || file.indexOf(this.query) >= 0;
        var under = covered[this.parent[i]];
        if (hit) {
          matched[i] = 1;
          count++;
          if (!under) time += this.total[i];
        }
        covered[i] = hit || under ? 1 : 0;
      }
      this.matched = matched;
      this.matchInfo.textContent =
        count + (count === 1 ? " frame, " : " frames, ") + ms(time) + " (" +
        percent(time, this.rootTotal) + ")";
    }
    this.schedule();
  };

  Flame.prototype.renderCrumbs = function () {
    var self = this;
    var path = [];
    for (var i = this.zoomed; i >= 0; i = this.visibleParent(i)) path.push(i);
    path.reverse();
    while (this.crumbs.firstChild) this.crumbs.removeChild(this.crumbs.firstChild);
    path.forEach(function (node, k) {
      if (k > 0) self.crumbs.appendChild(el("span", "fpf-sep", "\u203a"));
      if (k === path.length - 1) {
        self.crumbs.appendChild(el("span", "fpf-crumb fpf-current", self.label(node)));
        return;
      }
      var button = el("button", "fpf-crumb", self.label(node));
      button.type = "button";
      button.title = "Zoom out to " + self.label(node);
      button.addEventListener("click", function () {
        self.setZoom(node);
      });
      self.crumbs.appendChild(button);
    });
  };

  // How many rows the zoomed subtree needs at the current width (culled nodes excluded).
  Flame.prototype.measure = function (width) {
    var scale = this.total[this.zoomed] > 0 ? width / this.total[this.zoomed] : 0;
    var deepest = 0;
    var stack = [this.zoomed, 0];
    while (stack.length) {
      var depth = stack.pop();
      var i = stack.pop();
      if (depth > deepest) deepest = depth;
      if (this.wait[i] * scale >= MIN_WIDTH && depth + 1 > deepest) deepest = depth + 1;
      var kids = this.kids[i];
      if (!kids) continue;
      for (var k = 0; k < kids.length; k++) {
        if (this.total[kids[k]] * scale < MIN_WIDTH) break; // siblings are heaviest first
        stack.push(kids[k], depth + 1);
      }
    }
    return deepest + 1;
  };

  Flame.prototype.layout = function () {
    var width = this.scroller.clientWidth;
    if (!width) return;
    this.rows = this.rootTotal > 0 ? this.measure(width) : 0;
    var full = this.rows * this.rowHeight;
    var limit = this.options.maxHeight || Math.max(200, Math.round(window.innerHeight * 0.75));
    this.sizer.style.height = full + "px";
    this.scroller.style.height = Math.min(full, limit) + "px";
    this.schedule();
  };

  Flame.prototype.schedule = function () {
    var self = this;
    if (this.pending) return;
    this.pending = true;
    var run = function () {
      self.pending = false;
      self.draw();
    };
    if (window.requestAnimationFrame) window.requestAnimationFrame(run);
    else setTimeout(run, 16);
  };

  Flame.prototype.palette = function () {
    var dark = !!(this.dark && this.dark.matches);
    return {
      dark: dark,
      text: dark ? "#f2f2f2" : "#1b1b1b",
      dimText: dark ? "#9a9a9a" : "#555555",
      user: function (h) {
        return "hsl(" + (12 + (h % 34)) + "," + (dark ? "62%," : "82%,") + (dark ? 40 + (h % 8) : 62 + (h % 10)) + "%)";
      },
      lib: function (h) {
        return "hsl(" + (196 + (h % 28)) + "," + (dark ? "22%," : "38%,") + (dark ? 30 + (h % 8) : 76 + (h % 8)) + "%)";
      },
      gain: function (t) {
        return "hsl(4," + (dark ? "58%," : "78%,") + (dark ? 24 + 18 * t : 90 - 28 * t) + "%)";
      },
      loss: function (t) {
        return "hsl(212," + (dark ? "52%," : "72%,") + (dark ? 24 + 18 * t : 90 - 28 * t) + "%)";
      },
      same: dark ? "#34363b" : "#e6e7ea",
      match: dark ? "hsl(300,70%,45%)" : "hsl(300,80%,70%)",
      faded: dark ? "#2c2c2c" : "#e4e4e4",
      wait: dark ? "#3c3f46" : "#d2d5db",
    };
  };

  Flame.prototype.draw = function () {
    var canvas = this.canvas;
    var width = this.scroller.clientWidth;
    var height = Math.min(this.scroller.clientHeight, this.rows * this.rowHeight);
    var ratio = window.devicePixelRatio || 1;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.width = Math.max(1, Math.round(width * ratio));
    canvas.height = Math.max(1, Math.round(height * ratio));
    var ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    this.hits = [];
    if (!(this.total[this.zoomed] > 0) || !width) return;

    var colors = this.palette();
    var rowH = this.rowHeight;
    var top = this.scroller.scrollTop;
    var firstRow = Math.floor(top / rowH);
    var lastRow = Math.floor((top + height) / rowH);
    var scale = width / this.total[this.zoomed];
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    var charWidth = ctx.measureText("abcdefghijklmnopqrstuvwxyz").width / 26 || 7;
    var self = this;

    function box(x, depth, w, fill, text, textColor, kind, node) {
      var y = depth * rowH - top;
      ctx.fillStyle = fill;
      ctx.fillRect(x, y, w > 2 ? w - 1 : w, rowH - 1);
      var room = Math.floor((w - 6) / charWidth);
      if (room >= 2) {
        ctx.fillStyle = textColor;
        ctx.fillText(text.length <= room ? text : text.slice(0, room - 1) + "\u2026", x + 3, y + rowH / 2);
      }
      (self.hits[depth] || (self.hits[depth] = [])).push(x, w, kind, node);
    }

    var stack = [this.zoomed, 0, 0];
    while (stack.length) {
      var depth = stack.pop();
      var x = stack.pop();
      var i = stack.pop();
      var w = this.total[i] * scale;
      if (depth >= firstRow && depth <= lastRow) {
        var fill;
        var textColor = colors.text;
        if (this.matched && !this.matched[i]) {
          fill = colors.faded;
          textColor = colors.dimText;
        } else if (this.matched) {
          fill = colors.match;
        } else if (this.diff) {
          fill = this.diffColor(i, colors);
        } else {
          var h = hash(this.label(i));
          fill = i === 0 || this.lib[i] ? colors.lib(h) : colors.user(h);
        }
        box(x, depth, w, fill, this.label(i), textColor, i, i);
      }
      if (depth + 1 > lastRow) continue;
      var cx = x;
      var kids = this.kids[i];
      if (kids) {
        for (var k = 0; k < kids.length; k++) {
          var kw = this.total[kids[k]] * scale;
          if (kw < MIN_WIDTH) break;
          stack.push(kids[k], cx, depth + 1);
          cx += kw;
        }
        for (; k < kids.length; k++) cx += this.total[kids[k]] * scale;
      }
      var aw = this.wait[i] * scale;
      if (aw >= MIN_WIDTH && depth + 1 >= firstRow) {
        box(cx, depth + 1, aw, colors.wait, "[await]", colors.dimText, AWAIT, i);
      }
    }
  };

  // Red for time B gained, blue for time it lost; the strongest change in the tree is the
  // deepest colour, and a change under 1% of the larger side is no change.
  Flame.prototype.diffColor = function (i, colors) {
    var a = this.diff.a[i];
    var b = this.diff.b[i];
    var change = b - a;
    if (Math.abs(change) <= 0.01 * Math.max(a, b) || !(this.biggestChange > 0)) return colors.same;
    var t = Math.min(1, Math.sqrt(Math.abs(change) / this.biggestChange));
    return change > 0 ? colors.gain(t) : colors.loss(t);
  };

  Flame.prototype.diffLines = function (i, lines) {
    var a = this.diff.a[i];
    var b = this.diff.b[i];
    var change = b - a;
    var sign = change > 0 ? "+" : change < 0 ? "\u2212" : "\u00b1";
    var note = "";
    if (a > 0 && b > 0) note = " (" + sign + Math.abs((change / a) * 100).toFixed(1) + "%)";
    else if (b > 0) note = " (only in " + this.labels.b + ")";
    else if (a > 0) note = " (only in " + this.labels.a + ")";
    lines.push(["", this.labels.a + " " + ms(a) + " \u2192 " + this.labels.b + " " + ms(b) + this.unit]);
    lines.push([
      change > 0 ? "fpf-tip-gain" : change < 0 ? "fpf-tip-loss" : "",
      "change " + sign + ms(Math.abs(change)) + note,
    ]);
  };

  Flame.prototype.hitAt = function (event) {
    var rect = this.canvas.getBoundingClientRect();
    var x = event.clientX - rect.left;
    var depth = Math.floor((event.clientY - rect.top + this.scroller.scrollTop) / this.rowHeight);
    var row = this.hits[depth];
    if (!row) return null;
    for (var k = 0; k < row.length; k += 4) {
      if (x >= row[k] && x < row[k] + Math.max(row[k + 1], 1)) {
        return { kind: row[k + 2], node: row[k + 3] };
      }
    }
    return null;
  };

  Flame.prototype.hover = function (event) {
    var hit = this.hitAt(event);
    if (!hit) {
      this.tip.hidden = true;
      this.canvas.style.cursor = "default";
      return;
    }
    this.canvas.style.cursor = "pointer";
    var i = hit.node;
    var lines = [];
    if (hit.kind === AWAIT) {
      lines.push(["fpf-tip-title", "[await] in " + this.label(i)]);
      lines.push(["", "await " + ms(this.wait[i]) + " (" + percent(this.wait[i], this.rootTotal) + " of all)"]);
      lines.push(["fpf-tip-note", "time suspended in an await"]);
    } else {
      lines.push(["fpf-tip-title", this.label(i)]);
      var where = this.where(i);
      if (where) lines.push(["fpf-tip-where", where]);
      if (this.diff) {
        this.diffLines(i, lines);
      } else {
        lines.push(["", "total " + ms(this.total[i]) + " (" + percent(this.total[i], this.rootTotal) + " of all)"]);
        lines.push(["", "self " + ms(this.self[i])]);
        if (this.wait[i] > 0) lines.push(["", "await " + ms(this.wait[i])]);
      }
      if (i !== 0) lines.push(["fpf-tip-note", this.lib[i] ? "library" : "your code"]);
    }
    while (this.tip.firstChild) this.tip.removeChild(this.tip.firstChild);
    for (var k = 0; k < lines.length; k++) this.tip.appendChild(el("div", lines[k][0], lines[k][1]));
    this.tip.hidden = false;
    var left = event.clientX + 14;
    var topPx = event.clientY + 14;
    var box = this.tip.getBoundingClientRect();
    if (left + box.width > window.innerWidth - 4) left = Math.max(4, event.clientX - box.width - 14);
    if (topPx + box.height > window.innerHeight - 4) topPx = Math.max(4, event.clientY - box.height - 14);
    this.tip.style.left = left + "px";
    this.tip.style.top = topPx + "px";
  };

  Flame.prototype.click = function (event) {
    var hit = this.hitAt(event);
    if (!hit) return;
    var i = hit.node;
    if (hit.kind !== AWAIT && i === this.zoomed && i !== 0) {
      this.setZoom(this.visibleParent(i)); // clicking the zoomed frame zooms out one level
    } else {
      this.setZoom(i);
    }
  };

  Flame.prototype.destroy = function () {
    this.listeners.forEach(function (entry) {
      entry[0].removeEventListener(entry[1], entry[2]);
    });
    if (this.resizer) this.resizer.disconnect();
    while (this.root.firstChild) this.root.removeChild(this.root.firstChild);
  };

  function mount(element, data, options) {
    var flame = new Flame(element, data, options);
    return {
      zoom: function (node) {
        flame.setZoom(node);
      },
      search: function (text) {
        flame.search(text);
      },
      setHideLibrary: function (hide) {
        flame.setHideLibrary(hide);
      },
      destroy: function () {
        flame.destroy();
      },
    };
  }

  global.FastprofFlame = { mount: mount, version: 1 };
})(window);
