/*
 * fastprof report page: draws a scan report or a diff report from the JSON payload embedded in
 * <script type="application/json" id="fastprof-report"> (fastprof/report/data.py, diff.py).
 *
 * Views, chosen by the URL hash so they can be linked and the back button works:
 *   #overview (or no hash)   summary, the routes table, the findings by severity
 *   #route=<route key>       one route: its numbers, findings, latency histogram, flame graph
 *   #finding=<index>         one finding, opened: evidence, source lines, advice
 *
 * Every string in the payload came from the profiled program or its traffic (paths, SQL,
 * headers, exception text) and is untrusted: it reaches the page only through textContent,
 * attribute values set one by one, and SVG text nodes. Nothing here parses markup.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var SEVERITIES = ["high", "medium", "low"];
  var data = JSON.parse(document.getElementById("fastprof-report").textContent);
  var root = document.getElementById("fpr-app");
  var mounted = null; // the flame graph controller of the current view
  var resizers = []; // redraw callbacks of the current view (histograms)
  var shown = false;

  // ---- DOM helpers -------------------------------------------------------------------------

  // h("a", {class: "x", href: "#y", text: "label"}, [children]): attributes one by one, text
  // through textContent, children appended; never markup.
  function h(tag, props, children) {
    var node = document.createElement(tag);
    setProps(node, props);
    append(node, children);
    return node;
  }

  function svg(tag, props, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setProps(node, props);
    append(node, children);
    return node;
  }

  function setProps(node, props) {
    if (!props) return;
    for (var key in props) {
      if (!Object.prototype.hasOwnProperty.call(props, key)) continue;
      var value = props[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.setAttribute("class", value);
      else if (key === "on") {
        for (var type in value) node.addEventListener(type, value[type]);
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    if (children === null || children === undefined) return;
    if (!Array.isArray(children)) children = [children];
    for (var i = 0; i < children.length; i++) {
      var child = children[i];
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ---- formatting --------------------------------------------------------------------------

  function num(value, digits) {
    if (typeof value !== "number" || !isFinite(value)) return "\u2013";
    return value.toLocaleString("en-US", {
      minimumFractionDigits: digits || 0,
      maximumFractionDigits: digits || 0,
    });
  }

  function fmtMs(value) {
    if (typeof value !== "number" || !isFinite(value)) return "\u2013";
    if (value >= 10000) return num(value / 1000, 1) + " s";
    if (value >= 1000) return num(value / 1000, 2) + " s";
    if (value >= 100) return num(value, 0) + " ms";
    if (value >= 10) return num(value, 1) + " ms";
    if (value >= 1) return num(value, 2) + " ms";
    if (value > 0) return num(value * 1000, value * 1000 >= 10 ? 0 : 1) + " \u00b5s";
    return "0 ms";
  }

  function fmtUs(value) {
    if (typeof value !== "number" || !isFinite(value)) return "\u2013";
    if (value >= 1000) return fmtMs(value / 1000);
    return num(value, value >= 10 ? 0 : 1) + " \u00b5s";
  }

  function fmtBytes(value) {
    if (typeof value !== "number" || !isFinite(value)) return "\u2013";
    if (value >= 1048576) return num(value / 1048576, 1) + " MB";
    if (value >= 1024) return num(value / 1024, 1) + " KB";
    return num(value, 0) + " B";
  }

  function fmtSmall(value) {
    if (typeof value !== "number" || !isFinite(value)) return "\u2013";
    if (Number.isInteger(value)) return num(value, 0);
    return num(value, Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
  }

  // axis labels: as short as the value allows ("6 ms", "2.5 ms", "1.2 s")
  function fmtTick(value) {
    if (value >= 1000) return +(value / 1000).toPrecision(3) + " s";
    if (value >= 1) return +value.toPrecision(3) + " ms";
    return +(value * 1000).toPrecision(3) + " \u00b5s";
  }

  // "2026-11-25T10:24:55+00:00" -> "2026-11-25 10:24 UTC"; anything else as it is
  function fmtTime(text) {
    var m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$/.exec(String(text || ""));
    if (!m) return String(text || "");
    var zone = !m[5] || m[5] === "Z" || /^[+-]00:?00$/.test(m[5]) ? "UTC" : "UTC" + m[5];
    return m[1] + " " + m[2] + " " + zone;
  }

  function plural(n, word) {
    return num(n, 0) + " " + word + (n === 1 ? "" : "s");
  }

  // "GET /users/{id}" -> ["GET", "/users/{id}"]
  function splitRoute(key) {
    var text = String(key || "");
    var at = text.indexOf(" ");
    return at > 0 ? [text.slice(0, at), text.slice(at + 1)] : ["", text];
  }

  // a path with line-break opportunities before each "/" (wbr elements, not markup)
  function pathNodes(path) {
    var nodes = [];
    String(path).split("/").forEach(function (part, k) {
      if (k) nodes.push(document.createElement("wbr"), "/");
      if (part) nodes.push(part);
    });
    return nodes;
  }

  function methodBadge(method) {
    return method ? h("span", { class: "fpr-method fpr-method-" + method.replace(/[^A-Z]/g, ""), text: method }) : null;
  }

  function routeLabel(key) {
    var parts = splitRoute(key);
    return h("span", { class: "fpr-route" }, [methodBadge(parts[0]), h("span", { class: "fpr-mono" }, pathNodes(parts[1]))]);
  }

  function shortFile(file) {
    var text = String(file || "");
    var at = Math.max(text.lastIndexOf("site-packages/"), text.lastIndexOf("dist-packages/"));
    return at >= 0 ? text.slice(at + 14) : text;
  }

  function whereText(location) {
    if (!location || !location.file) return "";
    var text = shortFile(location.file);
    if (location.line) text += ":" + location.line;
    if (location.function) text += " in " + location.function;
    return text;
  }

  // ---- routing -----------------------------------------------------------------------------

  function routeHref(key) {
    return "#route=" + encodeURIComponent(key);
  }

  function findingHref(index) {
    return "#finding=" + index;
  }

  function parseHash() {
    var hash = window.location.hash.replace(/^#/, "");
    var at = hash.indexOf("=");
    if (at < 0) return { view: "overview" };
    var name = hash.slice(0, at);
    var value;
    try {
      value = decodeURIComponent(hash.slice(at + 1));
    } catch (e) {
      return { view: "overview" };
    }
    if (name === "route") return { view: "route", key: value };
    if (name === "finding") return { view: "finding", index: parseInt(value, 10) };
    return { view: "overview" };
  }

  function go(href) {
    if (window.location.hash === href) render();
    else window.location.hash = href;
  }

  function findRoute(key) {
    for (var i = 0; i < data.routes.length; i++) if (data.routes[i].route === key) return data.routes[i];
    return null;
  }

  // ---- shared pieces -----------------------------------------------------------------------

  function card(label, value, note, tone) {
    return h("div", { class: "fpr-card" + (tone ? " fpr-card-" + tone : "") }, [
      h("div", { class: "fpr-card-label", text: label }),
      h("div", { class: "fpr-card-value", text: value }),
      note ? h("div", { class: "fpr-card-note", text: note }) : null,
    ]);
  }

  function section(title, note) {
    return h("h2", { class: "fpr-section" }, [title, note ? h("small", { text: note }) : null]);
  }

  function crumbs(items) {
    var nodes = [];
    items.forEach(function (item, k) {
      if (k) nodes.push(h("span", { text: "\u203a", "aria-hidden": "true" }));
      nodes.push(item[1] ? h("a", { href: item[1], text: item[0] }) : h("b", { text: item[0] }));
    });
    return h("nav", { class: "fpr-crumbs", "aria-label": "Breadcrumb" }, nodes);
  }

  function kvTable(entries) {
    return h(
      "table",
      { class: "fpr-kv" },
      h(
        "tbody",
        null,
        entries.map(function (entry) {
          return h("tr", null, [h("th", { scope: "row", text: entry[0] }), h("td", null, entry[1])]);
        })
      )
    );
  }

  function worstSeverity(indices) {
    var best = 4;
    indices.forEach(function (i) {
      var rank = SEVERITIES.indexOf(data.findings[i].severity);
      if (rank >= 0 && rank < best) best = rank;
    });
    return best < 4 ? SEVERITIES[best] : null;
  }

  // A sortable table. columns: [{label, value(row), text(row) or cell(row), numeric, worst}]
  // worst: "max" or "min" marks the worst cell of that column.
  function sortableTable(columns, rows, options) {
    var body = h("tbody");
    var headCells = columns.map(function (column, c) {
      var button = h("button", { type: "button", text: column.label, title: column.title || "Sort by " + column.label });
      var th = h("th", { scope: "col" }, button);
      button.addEventListener("click", function () {
        var order = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
        headCells.forEach(function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", order);
        var sorted = rows.slice().sort(function (a, b) {
          var x = column.value(a);
          var y = column.value(b);
          var cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return order === "descending" ? -cmp : cmp;
        });
        fill(sorted);
      });
      return th;
    });
    var worst = columns.map(function (column) {
      if (!column.worst || rows.length < 2) return null;
      var values = rows.map(column.value).filter(function (v) {
        return typeof v === "number" && isFinite(v);
      });
      if (!values.length) return null;
      var pick = column.worst === "max" ? Math.max.apply(null, values) : Math.min.apply(null, values);
      var others = values.filter(function (v) {
        return v !== pick;
      });
      if (!others.length || (column.worst === "max" && pick <= 0)) return null; // all equal: nothing stands out
      return pick;
    });
    function fill(ordered) {
      clear(body);
      ordered.forEach(function (row) {
        var tr = h("tr", {
          class: options.rowClass ? options.rowClass(row) : null,
          tabindex: "0",
          "data-route": options.rowKey ? options.rowKey(row) : null,
        });
        columns.forEach(function (column, c) {
          var value = column.value(row);
          var td = h("td", {
            class: worst[c] !== null && value === worst[c] ? "fpr-worst-cell" : null,
            title: worst[c] !== null && value === worst[c] ? "worst in this column" : null,
          });
          append(td, column.cell ? column.cell(row) : column.text(row));
          tr.appendChild(td);
        });
        if (options.onOpen) {
          tr.addEventListener("click", function (event) {
            if (event.target.closest && event.target.closest("a")) return;
            options.onOpen(row);
          });
          tr.addEventListener("keydown", function (event) {
            if (event.key === "Enter") options.onOpen(row);
          });
        }
        body.appendChild(tr);
      });
    }
    fill(rows);
    return h("div", { class: "fpr-scroll" }, h("table", { class: "fpr-table", id: options.id }, [h("thead", null, h("tr", null, headCells)), body]));
  }

  // ---- evidence ----------------------------------------------------------------------------

  var CODE_KEYS = {
    sql: "SQL",
    query: "query",
    statement: "statement",
    fingerprint: "fingerprint",
    suggested_index: "suggested index",
  };
  var STACK_KEYS = { stack: "stack", frames: "stack", traceback: "traceback", blocking_stack: "stack" };
  // [measured key, alternative key, label of the measured, key holding the alternative's name]
  var COMPARISONS = [
    ["encode_ms", "suggested_ms", "encoder", "suggested"],
    ["cost_us_per_request", "pure_asgi_us_per_request", "middleware", null, "BaseHTTPMiddleware", "pure ASGI"],
  ];
  var LABELS = {
    count: "times",
    total_ms: "total time",
    wasted_ms: "time wasted",
    encode_ms: "encode time",
    suggested_ms: "with the suggestion",
    speedup: "speed-up",
    response_bytes: "response size",
    distinct_params: "distinct parameters",
    connects: "connections opened",
    connect_ms: "connect time",
    blocked_ms: "loop blocked",
    cost_us_per_request: "cost per request",
    total_cost_us_per_request: "all layers, per request",
    pure_asgi_us_per_request: "pure ASGI, per request",
    layers: "layers",
    params_examples: "parameters (examples)",
    call_sites: "call sites",
    duration_ms: "blocked for",
    loop_cpu_share: "loop thread on a CPU",
    loop_runqueue_share: "loop thread waiting for a CPU",
    location_share: "samples at this line",
    delayed_requests: "requests delayed",
    delayed: "delayed requests",
    gc_ms: "garbage collection",
    threshold_ms: "threshold",
    occurrences: "times at this line",
    stuck_in: "stuck in",
    wait_ms: "waited",
    longest_wait_ms: "longest wait",
    checkouts_waited: "checkouts that waited",
    in_use_at_wait: "in use at the wait",
    peak_in_use: "most in use",
    peak_waiting: "most waiting at once",
    pool_size: "pool size",
    pool_timeout_s: "pool timeout (s)",
    gc_pause_ms: "GC pauses left out",
    query_ms: "query time",
    handovers: "hand-overs that waited",
    ahead_at_handover: "ahead at hand-over",
    request_ms: "request time",
  };

  function label(key) {
    if (LABELS[key]) return LABELS[key];
    return key.replace(/_(ms|us|bytes|pct)(?=_|$)/g, "").replace(/_/g, " ");
  }

  function formatValue(key, value) {
    if (typeof value === "number") {
      if (/(^|_)ms($|_)/.test(key)) return fmtMs(value);
      if (/(^|_)us($|_)/.test(key)) return fmtUs(value);
      if (/bytes$/.test(key)) return fmtBytes(value);
      if (/(^|_)(pct|percent)($|_)/.test(key)) return num(value, 1) + "%";
      if (key === "speedup" || /_x$/.test(key)) return num(value, 1) + "\u00d7";
      if (/(share|ratio|cpu|runqueue)$/.test(key) && value >= 0 && value <= 1) return num(value * 100, 0) + "%";
      return fmtSmall(value);
    }
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (value === null || value === undefined) return "\u2013";
    return String(value);
  }

  function isFrameList(value) {
    return Array.isArray(value) && value.length > 0;
  }

  function frameParts(frame) {
    if (typeof frame === "string") return { text: frame, file: frame };
    if (Array.isArray(frame)) return { fn: frame[0], file: frame[1], line: frame[2] };
    if (frame && typeof frame === "object") {
      return { fn: frame["function"] || frame.fn || frame.name, file: frame.file || frame.filename, line: frame.line || frame.lineno, user: frame.user };
    }
    return { text: String(frame), file: "" };
  }

  function isLibraryPath(file) {
    var text = String(file || "");
    return !text || text.charAt(0) === "<" || /(site|dist)-packages|\/lib\/python\d|fastprof\//.test(text);
  }

  function stackView(frames) {
    return h(
      "ol",
      { class: "fpr-stack" },
      frames.map(function (frame) {
        var p = frameParts(frame);
        var user = p.user !== undefined ? !!p.user : !isLibraryPath(p.file);
        if (p.text !== undefined) return h("li", { class: user ? "fpr-user" : null, text: p.text });
        var where = shortFile(p.file) + (p.line ? ":" + p.line : "");
        return h("li", { class: user ? "fpr-user" : null }, [String(p.fn || "?"), where ? h("span", { class: "fpr-where", text: "  " + where }) : null]);
      })
    );
  }

  function comparison(evidence, spec, used) {
    var now = evidence[spec[0]];
    var alt = evidence[spec[1]];
    if (typeof now !== "number" || typeof alt !== "number") return null;
    used[spec[0]] = used[spec[1]] = true;
    var nameNow = spec[4] || (typeof evidence[spec[2]] === "string" ? evidence[spec[2]] : label(spec[0]));
    var nameAlt = spec[5] || (spec[3] && typeof evidence[spec[3]] === "string" ? evidence[spec[3]] : label(spec[1]));
    var most = Math.max(now, alt) || 1;
    var fmt = /_us/.test(spec[0]) ? fmtUs : fmtMs;
    var rows = [];
    [[nameNow, now, false], [nameAlt, alt, alt < now]].forEach(function (row) {
      var bar = h("div", { class: "fpr-bar" + (row[2] ? " fpr-bar-better" : "") });
      bar.style.width = Math.max(0.5, (row[1] / most) * 100) + "%";
      rows.push(h("span", { text: row[0] }), h("div", null, bar), h("span", { class: "fpr-num", text: fmt(row[1]) }));
    });
    return h("div", { class: "fpr-bars", role: "img", "aria-label": nameNow + " " + fmt(now) + ", " + nameAlt + " " + fmt(alt) }, rows);
  }

  function isFlatObject(value) {
    if (!value || typeof value !== "object" || Array.isArray(value)) return false;
    return Object.keys(value).every(function (k) {
      return value[k] === null || typeof value[k] !== "object";
    });
  }

  // An array of flat objects (pool_exhaustion's holders): one row each, a column per key.
  function objectTable(rows) {
    var keys = Object.keys(rows[0]);
    return h("table", { class: "fpr-table" }, [
      h("thead", null, h("tr", null, keys.map(function (k) {
        return h("th", { scope: "col", text: label(k) });
      }))),
      h("tbody", null, rows.map(function (row) {
        return h("tr", null, keys.map(function (k) {
          return h("td", { text: formatValue(k, row[k]) });
        }));
      })),
    ]);
  }

  function evidenceView(evidence) {
    var parts = [];
    var used = {};
    var keys = Object.keys(evidence || {});
    COMPARISONS.forEach(function (spec) {
      var bars = comparison(evidence, spec, used);
      if (bars) parts.push(bars);
    });
    var stats = keys
      .filter(function (key) {
        return typeof evidence[key] === "number" && !used[key];
      })
      .map(function (key) {
        return h("div", { class: "fpr-stat" }, [
          h("span", { class: "fpr-stat-label", text: label(key) }),
          h("span", { class: "fpr-stat-value", text: formatValue(key, evidence[key]) }),
        ]);
      });
    if (stats.length) parts.unshift(h("div", { class: "fpr-stats" }, stats));
    var sql = typeof evidence.sql === "string" ? evidence.sql.toLowerCase().replace(/\s+/g, " ") : null;
    var rows = [];
    keys.forEach(function (key) {
      var value = evidence[key];
      if (typeof value === "number" || used[key]) return;
      if (CODE_KEYS[key] && typeof value === "string") {
        if (key === "fingerprint" && sql !== null && value.replace(/\s+/g, " ") === sql) return;
        parts.push(h("h4", { text: CODE_KEYS[key] }), h("pre", { class: "fpr-pre", text: value }));
      } else if (STACK_KEYS[key] && isFrameList(value)) {
        parts.push(h("h4", { text: STACK_KEYS[key] }), stackView(value));
      } else if (key === "plan" && value && Array.isArray(value.plan)) {
        // slow_query: the database's plan, one node per line
        var title = "query plan" + (value.database ? " (" + value.database + ")" : "");
        parts.push(
          h("h4", { text: title }),
          h("pre", { class: "fpr-pre", text: value.plan.length ? value.plan.join("\n") : value.error || "no plan" })
        );
      } else if (Array.isArray(value) && value.length && value.every(isFlatObject)) {
        parts.push(h("h4", { text: label(key) }), objectTable(value));
      } else if (Array.isArray(value)) {
        if (!value.length) return;
        var simple = value.every(function (v) {
          return v === null || typeof v !== "object";
        });
        parts.push(
          h("h4", { text: label(key) }),
          simple
            ? h("ul", { class: "fpr-list fpr-mono" }, value.map(function (v) {
                return h("li", { text: formatValue(key, v) });
              }))
            : h("pre", { class: "fpr-pre", text: JSON.stringify(value, null, 2) })
        );
      } else if (value && typeof value === "object") {
        rows.push([label(key), h("pre", { class: "fpr-pre", text: JSON.stringify(value, null, 2) })]);
      } else {
        rows.push([label(key), formatValue(key, value)]);
      }
    });
    if (rows.length) parts.push(h("h4", { text: "details" }), kvTable(rows));
    if (!parts.length) parts.push(h("p", { class: "fpr-muted", text: "No evidence recorded." }));
    return parts;
  }

  function sourceView(finding) {
    var source = finding.source;
    var loc = finding.location;
    if (!loc) return null;
    var head = h("div", { class: "fpr-source-head", title: loc.file, text: finding.where || whereText(loc) });
    if (!source || source.error || !source.lines.length) {
      return h("div", { class: "fpr-source" }, [
        head,
        h("div", { class: "fpr-source-error", text: "Source not shown: " + (source && source.error ? source.error : "the file was not read") + "." }),
      ]);
    }
    var lines = source.lines.map(function (text, k) {
      var no = source.start + k;
      return h("div", { class: "fpr-source-line" + (no === source.line ? " fpr-here" : ""), "data-line": no }, [
        h("span", { class: "fpr-source-no", text: String(no) }),
        h("span", { class: "fpr-source-text", text: text || " " }),
      ]);
    });
    return h("div", { class: "fpr-source" }, [head, h("div", { class: "fpr-source-lines" }, lines)]);
  }

  function adviceView(text) {
    var paragraphs = String(text || "").split(/\n+/).filter(function (p) {
      return p.trim();
    });
    if (!paragraphs.length) return h("p", { class: "fpr-muted", text: "No advice recorded for this finding." });
    return h(
      "div",
      { class: "fpr-advice" },
      paragraphs.map(function (p) {
        return h("p", { class: /^(Source|Sources):/.test(p) ? "fpr-cite" : null, text: p });
      })
    );
  }

  function findingCard(finding, index, options) {
    options = options || {};
    var meta = [finding.kind];
    if (options.showRoute !== false) meta.push(finding.route || "whole app");
    if (finding.location) meta.push(finding.where || whereText(finding.location));
    if (finding.count > 1) meta.push("in " + plural(finding.count, "request"));
    var details = h("details", {
      class: "fpr-finding fpr-finding-" + finding.severity,
      id: index !== null ? "finding-" + index : null,
      "data-finding": index,
      open: !!options.open,
    });
    details.appendChild(
      h("summary", null, [
        h("span", { class: "fpr-sev fpr-sev-" + finding.severity, text: finding.severity }),
        h("span", { class: "fpr-finding-title", text: finding.title }),
        h("span", { class: "fpr-finding-meta", text: meta.join(" \u00b7 ") }),
      ])
    );
    var body = h("div", { class: "fpr-finding-body" });
    var built = false;
    function build() {
      if (built) return;
      built = true;
      append(body, [h("h4", { text: "Evidence" })]);
      append(body, evidenceView(finding.evidence));
      var source = sourceView(finding);
      if (source) append(body, [h("h4", { text: "Source" }), source]);
      append(body, [h("h4", { text: "Advice" }), adviceView(finding.advice)]);
      var links = [];
      if (index !== null && options.permalink !== false) links.push(h("a", { href: findingHref(index), text: "Link to this finding" }));
      if (finding.route && findRoute(finding.route) && options.routeLink !== false) links.push(h("a", { href: routeHref(finding.route), text: "Route: " + finding.route }));
      if (links.length) body.appendChild(h("div", { class: "fpr-finding-links" }, links));
    }
    // The body is built when first opened: a report with many findings opens fast.
    if (options.open) build();
    details.addEventListener("toggle", function () {
      if (details.open) build();
    });
    details.appendChild(body);
    return details;
  }

  function findingsBySeverity(indices, options) {
    var nodes = [];
    SEVERITIES.forEach(function (severity) {
      var group = indices.filter(function (i) {
        return data.findings[i].severity === severity;
      });
      if (!group.length) return;
      nodes.push(h("h3", null, [h("span", { class: "fpr-sev fpr-sev-" + severity, text: severity }), " ", plural(group.length, "finding")]));
      group.forEach(function (i) {
        nodes.push(findingCard(data.findings[i], i, options));
      });
    });
    return nodes;
  }

  // ---- latency histogram -------------------------------------------------------------------

  function niceTicks(low, high, scale, room) {
    var ticks = [];
    if (scale === "log") {
      var steps = [1, 2, 5];
      for (var e = Math.floor(Math.log10(low)) - 1; e <= Math.ceil(Math.log10(high)); e++) {
        for (var s = 0; s < steps.length; s++) {
          var v = steps[s] * Math.pow(10, e);
          if (v >= low && v <= high) ticks.push(v);
        }
      }
      while (ticks.length > room) {
        ticks = ticks.filter(function (_, k) {
          return k % 2 === 0;
        });
      }
      return ticks;
    }
    var span = high - low;
    var raw = span / Math.max(2, room);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) {
      return m * mag;
    }).filter(function (m) {
      return m >= raw;
    })[0];
    for (var t = Math.ceil(low / step) * step; t <= high + 1e-9; t += step) ticks.push(t);
    return ticks;
  }

  function histogramView(route) {
    var hist = route.histogram;
    var holder = h("div", { class: "fpr-panel" });
    if (!hist || !hist.count) {
      holder.appendChild(h("p", { class: "fpr-empty", text: "No latency histogram for this route." }));
      return holder;
    }
    var figure = h("div");
    holder.appendChild(figure);
    var lat = route.latency_ms || {};
    function draw() {
      var width = Math.max(280, figure.clientWidth || 600);
      var height = 170;
      var padL = 40;
      var padR = 14;
      var padT = 22;
      var padB = 26;
      var edges = hist.edges_ms;
      var low = edges[0];
      var high = edges[edges.length - 1];
      var log = hist.scale === "log";
      function x(v) {
        var t = log ? (Math.log(v) - Math.log(low)) / (Math.log(high) - Math.log(low)) : (v - low) / (high - low || 1);
        return padL + Math.min(1, Math.max(0, t)) * (width - padL - padR);
      }
      var most = Math.max.apply(null, hist.counts) || 1;
      function y(c) {
        return padT + (1 - c / most) * (height - padT - padB);
      }
      var nodes = [];
      nodes.push(svg("line", { class: "fpr-hist-axis", x1: padL, x2: width - padR, y1: height - padB + 0.5, y2: height - padB + 0.5 }));
      [0, most].forEach(function (c) {
        nodes.push(svg("text", { x: padL - 6, y: y(c) + 4, "text-anchor": "end", text: num(c, 0) }));
      });
      hist.counts.forEach(function (count, k) {
        if (!count) return;
        var x0 = x(edges[k]);
        var x1 = x(edges[k + 1]);
        var bar = svg("rect", {
          class: "fpr-hist-bar",
          x: x0 + 0.5,
          y: y(count),
          width: Math.max(1, x1 - x0 - 1),
          height: Math.max(1, height - padB - y(count)),
        });
        bar.appendChild(svg("title", { text: fmtMs(edges[k]) + " \u2013 " + fmtMs(edges[k + 1]) + ": " + plural(count, "request") }));
        nodes.push(bar);
      });
      niceTicks(low, high, hist.scale, Math.floor((width - padL - padR) / 70)).forEach(function (t) {
        nodes.push(svg("line", { class: "fpr-hist-axis", x1: x(t), x2: x(t), y1: height - padB, y2: height - padB + 4 }));
        nodes.push(svg("text", { x: x(t), y: height - 8, "text-anchor": "middle", text: fmtTick(t) }));
      });
      // percentile marks; marks that fall on the same pixel share one line ("p90 p99")
      var marks = [];
      [["p50", lat.p50], ["p90", lat.p90], ["p99", lat.p99]].forEach(function (mark) {
        if (typeof mark[1] !== "number" || mark[1] < low * 0.99 || mark[1] > high * 1.01) return;
        var at = x(Math.min(high, Math.max(low, mark[1])));
        var last = marks[marks.length - 1];
        if (last && Math.abs(last.at - at) < 3) last.text += " " + mark[0];
        else marks.push({ at: at, text: mark[0] });
      });
      var lastEnd = -1e9;
      marks.forEach(function (mark) {
        nodes.push(svg("line", { class: "fpr-hist-mark", x1: mark.at, x2: mark.at, y1: padT - 6, y2: height - padB }));
        var half = mark.text.length * 3.4;
        var labelX = Math.min(width - half - 2, Math.max(mark.at, lastEnd + half + 4));
        lastEnd = labelX + half;
        nodes.push(svg("text", { class: "fpr-hist-mark-label", x: labelX, y: padT - 10, "text-anchor": "middle", text: mark.text }));
      });
      var chart = svg(
        "svg",
        {
          class: "fpr-hist",
          width: width,
          height: height,
          viewBox: "0 0 " + width + " " + height,
          role: "img",
          "aria-label": "Latency histogram: " + plural(hist.count, "request") + ", p50 " + fmtMs(lat.p50) + ", p99 " + fmtMs(lat.p99),
        },
        nodes
      );
      clear(figure);
      figure.appendChild(chart);
    }
    resizers.push(draw);
    holder.appendChild(
      h("div", { class: "fpr-card-note", text: plural(hist.count, "request") + " \u00b7 " + (hist.scale === "log" ? "logarithmic" : "linear") + " time axis \u00b7 p50 " + fmtMs(lat.p50) + ", p90 " + fmtMs(lat.p90) + ", p99 " + fmtMs(lat.p99) + ", max " + fmtMs(lat.max) })
    );
    return holder;
  }

  // ---- flame graph -------------------------------------------------------------------------

  function mountFlame(holder, flame, options) {
    if (!flame) {
      holder.appendChild(h("p", { class: "fpr-empty", text: "No samples were recorded for this route." }));
      return;
    }
    if (!window.FastprofFlame) {
      holder.appendChild(h("p", { class: "fpr-empty", text: "The flame graph component did not load." }));
      return;
    }
    mounted = window.FastprofFlame.mount(holder, flame, options || {});
    window.requestAnimationFrame(function () {
      window.requestAnimationFrame(function () {
        if (window.performance && performance.mark) performance.mark("fastprof:flame-drawn");
      });
    });
  }

  function fileLinks(files) {
    var names = { svg: "SVG", speedscope: "speedscope", collapsed: "collapsed stacks", tree: "call tree" };
    var links = [];
    ["svg", "speedscope", "collapsed", "tree"].forEach(function (kind) {
      var path = files && files[kind];
      // relative paths inside the report directory only (data.py filters them too)
      if (typeof path !== "string" || /^[a-z][a-z0-9+.-]*:/i.test(path) || path.charAt(0) === "/") return;
      links.push(h("a", { href: path, text: names[kind], download: kind === "svg" ? null : true }));
    });
    if (!links.length) return null;
    return h("span", { class: "fpr-files" }, ["Files:"].concat(links));
  }

  // ---- the shell: side navigation, narrow-screen jump menu ---------------------------------

  var main;
  var navLinks = [];
  var jump;

  function routeAside(route) {
    if (data.kind === "diff") {
      var change = route.change_pct && route.change_pct.p99;
      return typeof change === "number" ? (change > 0 ? "+" : "") + num(change, 0) + "%" : "";
    }
    return route.latency_ms ? fmtMs(route.latency_ms.p99) : "";
  }

  function buildShell(title) {
    var list = h("ul", { class: "fpr-nav" });
    function item(href, content, key) {
      var link = h("a", { href: href, "data-key": key }, content);
      navLinks.push(link);
      list.appendChild(h("li", null, link));
      return link;
    }
    var side = h("nav", { class: "fpr-side", "aria-label": "Report" }, [
      h("a", { class: "fpr-brand", href: "#overview" }, ["fast", h("span", { text: "prof" }), data.kind === "diff" ? " diff" : " scan"]),
    ]);
    var overview = h("ul", { class: "fpr-nav" });
    var over = h("a", { href: "#overview", "data-key": "#overview" }, h("span", { class: "fpr-path", text: "Overview" }));
    navLinks.push(over);
    overview.appendChild(h("li", null, over));
    side.appendChild(overview);
    side.appendChild(h("h2", { text: "Routes (" + data.routes.length + ")" }));
    data.routes.forEach(function (route) {
      var sev = data.kind === "scan" ? worstSeverity(route.findings) : null;
      var parts = splitRoute(route.route);
      item(routeHref(route.route), [
        h("span", { class: "fpr-dot fpr-dot-" + (sev || "none"), title: sev ? sev + " severity finding" : null }),
        methodBadge(parts[0]),
        h("span", { class: "fpr-path fpr-mono" }, pathNodes(parts[1])),
        h("span", { class: "fpr-aside", text: routeAside(route) }),
      ], routeHref(route.route));
    });
    side.appendChild(list);

    jump = h("select", { "aria-label": "Go to" });
    jump.appendChild(h("option", { value: "#overview", text: "Overview" }));
    data.routes.forEach(function (route) {
      jump.appendChild(h("option", { value: routeHref(route.route), text: route.route }));
    });
    jump.addEventListener("change", function () {
      go(jump.value);
    });
    main = h("main", { class: "fpr-main", id: "fpr-main" });
    var content = h("div", { class: "fpr-content" }, [h("label", { class: "fpr-jump" }, jump), main]);
    root.appendChild(h("div", { class: "fpr-layout" }, [side, content]));
    document.title = title;
  }

  function markCurrent(href) {
    navLinks.forEach(function (link) {
      if (link.getAttribute("data-key") === href) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    var has = false;
    for (var i = 0; i < jump.options.length; i++) if (jump.options[i].value === href) has = true;
    jump.value = has ? href : "#overview";
  }

  function render() {
    if (mounted && mounted.destroy) mounted.destroy();
    mounted = null;
    resizers = [];
    clear(main);
    var where = parseHash();
    var views = data.kind === "diff" ? DIFF_VIEWS : SCAN_VIEWS;
    if (where.view === "route" && findRoute(where.key)) {
      markCurrent(routeHref(where.key));
      views.route(findRoute(where.key));
    } else if (where.view === "finding" && views.finding && data.findings[where.index]) {
      var finding = data.findings[where.index];
      markCurrent(finding.route && findRoute(finding.route) ? routeHref(finding.route) : "#overview");
      views.finding(where.index);
    } else {
      markCurrent("#overview");
      views.overview();
    }
    resizers.forEach(function (draw) {
      draw();
    });
    if (shown) window.scrollTo(0, 0);
    shown = true;
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    if (resizeTimer) clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      resizers.forEach(function (draw) {
        draw();
      });
    }, 120);
  });

  // ---- scan views --------------------------------------------------------------------------

  function settingsSummary(settings) {
    var parts = [];
    if (settings.duration) parts.push(settings.duration + " s per route");
    if (settings.concurrency) parts.push(plural(settings.concurrency, "connection"));
    if (settings.rate) parts.push(settings.rate + " req/s");
    if (settings.workers) parts.push(plural(settings.workers, "worker"));
    return parts.join(" \u00b7 ");
  }

  var ROUTE_COLUMNS = [
    { label: "route", value: function (r) { return r.route; }, cell: function (r) { return h("a", { href: routeHref(r.route) }, routeLabel(r.route)); } },
    { label: "req/s", value: function (r) { return r.rps; }, text: function (r) { return num(r.rps, 1); }, worst: "min", title: "requests per second (higher is better)" },
    { label: "p50", value: function (r) { return r.latency_ms.p50; }, text: function (r) { return fmtMs(r.latency_ms.p50); }, worst: "max" },
    { label: "p90", value: function (r) { return r.latency_ms.p90; }, text: function (r) { return fmtMs(r.latency_ms.p90); }, worst: "max" },
    { label: "p99", value: function (r) { return r.latency_ms.p99; }, text: function (r) { return fmtMs(r.latency_ms.p99); }, worst: "max" },
    { label: "errors", value: function (r) { return r.errors; }, text: function (r) { return num(r.errors, 0); }, worst: "max" },
    { label: "queries/req", value: function (r) { return r.queries_per_request; }, text: function (r) { return fmtSmall(r.queries_per_request); }, worst: "max", title: "database queries per request" },
    { label: "blocked/req", value: function (r) { return r.blocked_ms; }, text: function (r) { return fmtMs(r.blocked_ms); }, worst: "max", title: "event loop blocked, per request" },
    {
      label: "findings",
      value: function (r) { return r.findings.length ? 10 - SEVERITIES.indexOf(worstSeverity(r.findings)) * 3 + r.findings.length / 100 : 0; },
      cell: function (r) {
        var sev = worstSeverity(r.findings);
        return sev ? h("span", { class: "fpr-sev fpr-sev-" + sev, text: r.findings.length + " " + sev }) : h("span", { class: "fpr-muted", text: "\u2013" });
      },
    },
  ];

  // ---- sweep and server (fastprof/scan/sweep.py, server_check.py) ----------------------------

  // req/s as bars (left axis), p99 as a dashed line with dots (right axis), one per setting
  function sweepChart(sweep) {
    var points = sweep.results || [];
    var figure = h("div");
    function short(p) {
      return Object.keys(p.setting).map(function (k) { return String(p.setting[k]); }).join("/");
    }
    function draw() {
      var width = Math.max(280, figure.clientWidth || 600);
      var height = 190;
      var padL = 52;
      var padR = 52;
      var padT = 22;
      var padB = 30;
      var most = Math.max.apply(null, points.map(function (p) { return p.rps; }).concat([1]));
      var worstP99 = Math.max.apply(null, points.map(function (p) { return p.p99_ms; }).concat([0.001]));
      var slot = (width - padL - padR) / Math.max(1, points.length);
      function yRps(v) { return padT + (1 - v / most) * (height - padT - padB); }
      function yP99(v) { return padT + (1 - v / worstP99) * (height - padT - padB); }
      var nodes = [svg("line", { class: "fpr-hist-axis", x1: padL, x2: width - padR, y1: height - padB + 0.5, y2: height - padB + 0.5 })];
      [0, most].forEach(function (v) {
        nodes.push(svg("text", { x: padL - 6, y: yRps(v) + 4, "text-anchor": "end", text: num(v, 0) }));
      });
      [0, worstP99].forEach(function (v) {
        nodes.push(svg("text", { x: width - padR + 6, y: yP99(v) + 4, "text-anchor": "start", text: fmtMs(v) }));
      });
      nodes.push(svg("text", { x: 4, y: 12, text: "req/s (bars)" }));
      nodes.push(svg("text", { x: width - 4, y: 12, "text-anchor": "end", text: "p99 (line)" }));
      var line = [];
      points.forEach(function (p, k) {
        var mid = padL + slot * (k + 0.5);
        var barW = Math.max(4, Math.min(60, slot * 0.6));
        var bar = svg("rect", { class: "fpr-hist-bar", x: mid - barW / 2, y: yRps(p.rps), width: barW, height: Math.max(1, height - padB - yRps(p.rps)) });
        bar.appendChild(svg("title", { text: Object.keys(p.setting).map(function (k2) { return k2 + "=" + p.setting[k2]; }).join(" ") + ": " + num(p.rps, 0) + " req/s, p99 " + fmtMs(p.p99_ms) + ", " + plural(p.errors, "error") }));
        nodes.push(bar);
        var pick = k === sweep.recommended;
        nodes.push(svg("text", { class: pick ? "fpr-hist-mark-label" : null, x: mid, y: height - 10, "text-anchor": "middle", text: short(p) + (pick ? " \u2605" : "") }));
        if (p.requests) line.push([mid, yP99(p.p99_ms)]);
      });
      if (line.length > 1) {
        nodes.push(svg("polyline", { class: "fpr-hist-mark", fill: "none", points: line.map(function (xy) { return xy[0] + "," + xy[1]; }).join(" ") }));
      }
      line.forEach(function (xy) {
        nodes.push(svg("circle", { cx: xy[0], cy: xy[1], r: 3, fill: "currentColor" }));
      });
      clear(figure);
      figure.appendChild(svg("svg", { class: "fpr-hist", width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "Sweep over " + sweep.parameter + ": req/s and p99 per setting" }, nodes));
    }
    resizers.push(draw);
    return figure;
  }

  function sweepView(sweep) {
    var nodes = [section("Sweep", (sweep.parameters || []).join(" \u00d7 ") + " \u00b7 " + plural((sweep.routes || []).length, "route") + " mixed \u00b7 " + sweep.duration + " s per setting \u00b7 " + plural(sweep.concurrency, "connection") + (sweep.rounds > 1 ? " \u00b7 medians of " + sweep.rounds + " rounds" : "") + " \u00b7 app not profiled")];
    nodes.push(h("p", null, h("strong", { text: sweep.recommendation || "" })));
    var panel = h("div", { class: "fpr-panel" });
    if ((sweep.results || []).length) panel.appendChild(sweepChart(sweep));
    nodes.push(panel);
    nodes.push(
      kvTable(
        (sweep.results || []).map(function (p, k) {
          var name = Object.keys(p.setting).map(function (key) { return key + "=" + p.setting[key]; }).join(" ");
          return [name + (k === sweep.recommended ? " \u2605" : ""), num(p.rps, 0) + " req/s \u00b7 p50 " + fmtMs(p.p50_ms) + " \u00b7 p99 " + fmtMs(p.p99_ms) + " \u00b7 " + plural(p.errors, "error") + (p.runs && p.runs.length > 1 ? " \u00b7 rounds: " + p.runs.map(function (r) { return num(r.rps, 0); }).join(", ") + " req/s" : "") + (p.error_samples && p.error_samples.length ? " (" + p.error_samples[0] + ")" : "")];
        })
      )
    );
    if (sweep.notes && sweep.notes.length) {
      nodes.push(h("ul", { class: "fpr-list" }, sweep.notes.map(function (n) { return h("li", { text: n }); })));
    }
    return nodes;
  }

  function serverView(server) {
    var rows = [
      ["HTTP version", server.http_version || "\u2013"],
      ["Server header", server.server_header || "\u2013"],
      ["Keep-alive", server.keep_alive === true ? "yes: a second request was answered on the same connection" : server.keep_alive === false ? "no: the connection closed after one response" + (server.connection_header ? " (Connection: " + server.connection_header + ")" : "") : "\u2013"],
    ];
    (server.probes || []).forEach(function (p) {
      rows.push(["GET " + p.path, p.status + " \u00b7 " + fmtBytes(p.bytes) + (p.encoding ? " \u2192 " + fmtBytes(p.wire_bytes) + " " + p.encoding : " uncompressed") + (p.content_type ? " \u00b7 " + p.content_type : "")]);
    });
    if (server.error) rows.push(["Could not check", server.error]);
    return [section("Server", "what HTTP shows of the server (--url); problems are listed as server_config findings"), kvTable(rows)];
  }

  var SCAN_VIEWS = {
    overview: function () {
      var routes = data.routes;
      var requests = 0;
      routes.forEach(function (r) {
        requests += r.requests || 0;
      });
      var worst = null;
      routes.forEach(function (r) {
        if (!worst || r.latency_ms.p99 > worst.latency_ms.p99) worst = r;
      });
      var counts = SEVERITIES.map(function (s) {
        return data.findings.filter(function (f) {
          return f.severity === s;
        }).length;
      });
      main.appendChild(h("h1", { text: data.target || "fastprof scan" }));
      main.appendChild(h("p", { class: "fpr-meta", text: "Scanned " + fmtTime(data.started_at) + (settingsSummary(data.settings) ? " \u00b7 " + settingsSummary(data.settings) : "") }));
      main.appendChild(
        h("div", { class: "fpr-cards" }, [
          card("Routes", num(routes.length, 0), data.skipped.length ? data.skipped.length + " skipped" : "all discovered routes loaded"),
          card("Requests", num(requests, 0), data.workers.length ? plural(data.workers.length, "worker process") : null),
          card("Findings", num(data.findings.length, 0), counts[0] + " high \u00b7 " + counts[1] + " medium \u00b7 " + counts[2] + " low", counts[0] ? "bad" : null),
          worst ? card("Slowest p99", fmtMs(worst.latency_ms.p99), worst.route) : null,
        ])
      );
      main.appendChild(section("Routes", "click a row for its flame graph; click a heading to sort"));
      if (routes.length) {
        main.appendChild(
          sortableTable(ROUTE_COLUMNS, routes, {
            id: "fpr-routes",
            rowKey: function (r) { return r.route; },
            rowClass: function (r) { return routes.length > 1 && r === worst ? "fpr-worst" : null; },
            onOpen: function (r) { go(routeHref(r.route)); },
          })
        );
      } else {
        main.appendChild(h("p", { class: "fpr-empty", text: "No routes were loaded." }));
      }
      main.appendChild(section("Findings", data.findings.length ? "click one for its evidence, source and advice" : null));
      if (data.findings.length) {
        append(main, findingsBySeverity(data.findings.map(function (_, i) { return i; }), {}));
      } else {
        main.appendChild(h("p", { class: "fpr-empty", text: "No findings: the detectors saw nothing to fix." }));
      }
      if (data.sweep) append(main, sweepView(data.sweep));
      if (data.server) append(main, serverView(data.server));
      if (data.skipped.length) {
        main.appendChild(section("Skipped routes", "not loaded; add a scenario to include them"));
        main.appendChild(
          kvTable(
            data.skipped.map(function (s) {
              return [s.route, s.reason];
            })
          )
        );
      }
      var settingRows = Object.keys(data.settings).map(function (key) {
        var value = data.settings[key];
        return [key, value !== null && typeof value === "object" ? JSON.stringify(value) : formatValue(key, value)];
      });
      if (settingRows.length) {
        main.appendChild(h("details", { class: "fpr-footer" }, [h("summary", { text: "Scan settings" }), kvTable(settingRows)]));
      }
    },

    route: function (route) {
      var lat = route.latency_ms || {};
      main.appendChild(crumbs([["Overview", "#overview"], [route.route, null]]));
      main.appendChild(h("h1", null, routeLabel(route.route)));
      var status = Object.keys(route.status_counts || {}).sort().map(function (code) {
        return code + " \u00d7 " + num(route.status_counts[code], 0);
      });
      main.appendChild(
        h("p", { class: "fpr-meta", text: plural(route.requests, "request") + (status.length ? " \u00b7 status " + status.join(", ") : "") + (route.source ? " \u00b7 from " + route.source : "") })
      );
      main.appendChild(
        h("div", { class: "fpr-cards fpr-cards-small" }, [
          card("req/s", num(route.rps, 1)),
          card("p50", fmtMs(lat.p50)),
          card("p90", fmtMs(lat.p90)),
          card("p99", fmtMs(lat.p99), "max " + fmtMs(lat.max)),
          card("errors", num(route.errors, 0), route.timeouts ? plural(route.timeouts, "timeout") : null, route.errors ? "bad" : null),
          card("queries/req", fmtSmall(route.queries_per_request)),
          card("blocked/req", fmtMs(route.blocked_ms), "event loop stalled"),
        ])
      );
      if (route.findings.length) {
        main.appendChild(section("Findings", plural(route.findings.length, "finding") + " on this route"));
        route.findings.forEach(function (i) {
          main.appendChild(findingCard(data.findings[i], i, { showRoute: false, routeLink: false }));
        });
      }
      if (route.error_samples && route.error_samples.length) {
        main.appendChild(section("Errors", "a few of the failed responses"));
        main.appendChild(h("ul", { class: "fpr-list fpr-mono" }, route.error_samples.map(function (e) { return h("li", { text: e }); })));
      }
      main.appendChild(section("Latency"));
      main.appendChild(histogramView(route));
      var head = h("div", { class: "fpr-flame-head" }, [section("Flame graph", "time per frame over all profiled requests; click to zoom"), fileLinks(route.files)]);
      main.appendChild(head);
      var holder = h("div", { id: "fpr-flame" });
      main.appendChild(holder);
      mountFlame(holder, route.flame === null ? null : data.flames[route.flame], {});
    },

    finding: function (index) {
      var finding = data.findings[index];
      var trail = [["Overview", "#overview"]];
      if (finding.route && findRoute(finding.route)) trail.push([finding.route, routeHref(finding.route)]);
      trail.push([finding.kind, null]);
      main.appendChild(crumbs(trail));
      main.appendChild(findingCard(finding, index, { open: true, permalink: false }));
    },
  };

  // ---- diff views --------------------------------------------------------------------------

  var DIFF_METRICS = [
    ["rps", "req/s", false, function (v) { return num(v, 1); }],
    ["p50", "p50", true, fmtMs],
    ["p90", "p90", true, fmtMs],
    ["p99", "p99", true, fmtMs],
    ["queries_per_request", "queries/req", true, fmtSmall],
    ["blocked_ms", "blocked/req", true, fmtMs],
  ];

  // the change's badge: bad (red) when it went the wrong way by more than 5%
  function deltaBadge(change, lowerIsBetter) {
    if (typeof change !== "number") return null;
    if (!isFinite(change)) return h("span", { class: "fpr-delta fpr-delta-bad", text: "new" });
    var worse = lowerIsBetter ? change : -change;
    var tone = Math.abs(change) < 5 ? "same" : worse > 0 ? "bad" : "good";
    return h("span", { class: "fpr-delta fpr-delta-" + tone, text: (change > 0 ? "+" : change < 0 ? "\u2212" : "\u00b1") + num(Math.abs(change), Math.abs(change) < 10 ? 1 : 0) + "%" });
  }

  function diffCell(route, metric) {
    var a = route.a ? route.a[metric[0]] : null;
    var b = route.b ? route.b[metric[0]] : null;
    if (b === null || b === undefined) return [h("span", { class: "fpr-muted", text: "only in A" })];
    return [metric[3](b), deltaBadge(route.change_pct[metric[0]], metric[2]), a !== null && a !== undefined ? h("span", { class: "fpr-was", text: "was " + metric[3](a) }) : h("span", { class: "fpr-was", text: "new route" })];
  }

  function diffColumns() {
    var columns = [{ label: "route", value: function (r) { return r.route; }, cell: function (r) { return h("a", { href: routeHref(r.route) }, routeLabel(r.route)); } }];
    DIFF_METRICS.forEach(function (metric) {
      columns.push({
        label: metric[1],
        value: function (r) {
          var c = r.change_pct[metric[0]];
          return typeof c === "number" && isFinite(c) ? (metric[2] ? c : -c) : -1e9;
        },
        cell: function (r) { return diffCell(r, metric); },
        title: "sort by change (worst first)",
      });
    });
    return columns;
  }

  function diffFindings(title, list) {
    var nodes = [section(title, plural(list.length, "finding"))];
    if (!list.length) nodes.push(h("p", { class: "fpr-empty", text: "None." }));
    list.forEach(function (i) {
      nodes.push(findingCard(data.findings[i], i, {}));
    });
    return nodes;
  }

  var DIFF_VIEWS = {
    overview: function () {
      var regressed = data.routes.filter(function (r) {
        return r.regression;
      });
      main.appendChild(h("h1", { text: "A \u2192 B" }));
      main.appendChild(
        kvTable([
          ["A (baseline)", data.a.name + (data.a.target ? " \u00b7 " + data.a.target : "") + (data.a.started_at ? " \u00b7 " + fmtTime(data.a.started_at) : "")],
          ["B", data.b.name + (data.b.target ? " \u00b7 " + data.b.target : "") + (data.b.started_at ? " \u00b7 " + fmtTime(data.b.started_at) : "")],
        ])
      );
      main.appendChild(
        h("div", { class: "fpr-cards" }, [
          card("Routes compared", num(data.routes.length, 0)),
          card("Slower in B", num(regressed.length, 0), "p50/p99 up or req/s down by over " + data.threshold_pct + "%", regressed.length ? "bad" : "good"),
          card("Findings fixed", num(data.fixed.length, 0), null, data.fixed.length ? "good" : null),
          card("New findings", num(data.new.length, 0), null, data.new.length ? "bad" : null),
          card("Still open", num(data.still_open.length, 0)),
        ])
      );
      main.appendChild(section("Routes", "B's value, its change from A, and A's value; click a row for the differential flame graph"));
      main.appendChild(
        sortableTable(diffColumns(), data.routes, {
          id: "fpr-routes",
          rowKey: function (r) { return r.route; },
          rowClass: function (r) { return r.regression ? "fpr-worst" : null; },
          onOpen: function (r) { go(routeHref(r.route)); },
        })
      );
      append(main, diffFindings("New in B", data.new));
      append(main, diffFindings("Fixed (in A only)", data.fixed));
      append(main, diffFindings("Still open", data.still_open));
    },

    route: function (route) {
      main.appendChild(crumbs([["Overview", "#overview"], [route.route, null]]));
      main.appendChild(h("h1", null, routeLabel(route.route)));
      main.appendChild(
        h(
          "div",
          { class: "fpr-cards fpr-cards-small" },
          DIFF_METRICS.map(function (metric) {
            var cell = diffCell(route, metric);
            var change = route.change_pct[metric[0]];
            var worse = typeof change === "number" ? (metric[2] ? change : -change) : 0;
            return h("div", { class: "fpr-card" + (Math.abs(change) >= 5 ? (worse > 0 ? " fpr-card-bad" : " fpr-card-good") : "") }, [
              h("div", { class: "fpr-card-label", text: metric[1] }),
              h("div", { class: "fpr-card-value" }, cell.slice(0, 2)),
              cell[2] || null,
            ]);
          })
        )
      );
      main.appendChild(section("Differential flame graph", "width: A and B together; red: more time in B, blue: less"));
      var flame = route.flame === null || route.flame === undefined ? null : data.flames[route.flame];
      main.appendChild(
        h("p", {
          class: "fpr-muted",
          text: flame
            ? "Each tree is scaled to its scan's mean latency for this route, so times are milliseconds of an average request. Hover a frame for A's and B's time."
            : "",
        })
      );
      var holder = h("div", { id: "fpr-flame" });
      main.appendChild(holder);
      mountFlame(holder, flame, { labels: { a: "A", b: "B" }, unit: " per request" });
    },
  };

  buildShell(document.title);
  window.addEventListener("hashchange", render);
  render();
})();
