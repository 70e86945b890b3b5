"use strict";

// The dashboard applies each snapshot from the /events stream. Rates and
// interval latencies come from the difference between two consecutive
// snapshots, so the first snapshot after (re)connecting only sets the
// baseline. Any field may be missing or zero, for example inbox_backlog on a
// node without a store or raft on a node that is not a core.
(function () {
  const HISTORY = 120; // points kept per chart
  const TOP_RESTARTS = 5;
  const RECONNECT_MS = 3000;

  const byId = (id) => document.getElementById(id);

  const state = {
    previous: null, // last applied snapshot, the baseline for rates
    previousAt: 0, // performance.now() when it was applied
    updates: 0,
    rates: {}, // last computed per-second rates by counter name
  };

  const charts = {
    rates: { canvas: "chart-rates", series: [[], []], colors: ["--series-1", "--series-2"] },
    sessions: { canvas: "chart-sessions", series: [[]], colors: ["--series-1"], integer: true },
    deliveryP99: { canvas: "chart-delivery-p99", series: [[]], colors: ["--series-3"] },
    mailbox: { canvas: "chart-mailbox", series: [[]], colors: ["--series-4"], integer: true },
  };

  // ---- value helpers ----

  function isNumber(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  function number(v) {
    return isNumber(v) ? v : 0;
  }

  function object(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : {};
  }

  // field returns the first of the given keys that o has, so the page reads
  // both snake_case JSON and Go's default field names.
  function field(o, ...keys) {
    for (const key of keys) {
      if (o && o[key] !== undefined && o[key] !== null) return o[key];
    }
    return undefined;
  }

  // total sums a map of counts, or returns a plain count as it is.
  function total(v) {
    if (isNumber(v)) return v;
    return Object.values(object(v)).reduce((sum, n) => sum + number(n), 0);
  }

  // ---- formatting ----

  // plainRate formats a rate for #rate-in and #rate-out, which browser tests
  // read as numbers, so it has no grouping separators and no unit.
  function plainRate(v) {
    if (!isNumber(v)) return "0";
    return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
  }

  function formatCount(v) {
    return isNumber(v) ? Math.round(v).toLocaleString("en-US") : "-";
  }

  function formatRate(v) {
    return isNumber(v) ? plainRate(v) : "-";
  }

  function formatMs(v) {
    if (!isNumber(v)) return "-";
    if (v < 1) return v.toPrecision(2) + " ms";
    if (v < 10) return v.toFixed(2) + " ms";
    if (v < 100) return v.toFixed(1) + " ms";
    return Math.round(v).toLocaleString("en-US") + " ms";
  }

  function formatBytes(v) {
    if (!isNumber(v)) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  // formatAge formats the age of a member record, given in milliseconds.
  function formatAge(ms) {
    if (!isNumber(ms)) return "-";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return formatDuration(ms / 1000);
  }

  function formatDuration(seconds) {
    if (!isNumber(seconds)) return "-";
    let s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + s + "s";
    return s + "s";
  }

  // ---- DOM helpers ----

  function setText(id, text) {
    const el = byId(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  // fillTable replaces the rows of a tbody. Each row is an array of cells or
  // {cells, className}, and a cell is a string or {text, title, className}.
  function fillTable(id, rows, emptyText, columns) {
    const body = byId(id);
    if (!body) return;
    if (rows.length === 0) {
      const td = document.createElement("td");
      td.className = "empty";
      td.colSpan = columns;
      td.textContent = emptyText;
      const tr = document.createElement("tr");
      tr.appendChild(td);
      body.replaceChildren(tr);
      return;
    }
    const trs = rows.map((row) => {
      const tr = document.createElement("tr");
      const cells = Array.isArray(row) ? row : row.cells;
      if (!Array.isArray(row) && row.className) tr.className = row.className;
      for (const cell of cells) {
        const td = document.createElement("td");
        if (typeof cell === "object" && cell !== null) {
          td.textContent = cell.text;
          if (cell.title) td.title = cell.title;
          if (cell.className) td.className = cell.className;
        } else {
          td.textContent = cell;
        }
        tr.appendChild(td);
      }
      return tr;
    });
    body.replaceChildren(...trs);
  }

  // ---- rates and histograms ----

  // elapsedSeconds prefers the node's own uptime difference, which does not
  // include network delay, and falls back to the browser clock.
  function elapsedSeconds(previous, current, now) {
    const byUptime = number(current.uptime_seconds) - number(previous.uptime_seconds);
    if (byUptime > 0) return byUptime;
    return (now - state.previousAt) / 1000;
  }

  // counterRate returns the per-second increase of a counter, or null when
  // there is no baseline or the counter went down (the node restarted).
  function counterRate(previous, current, name, seconds) {
    if (!previous || seconds <= 0) return null;
    const before = object(previous.counters)[name];
    const after = object(current.counters)[name];
    if (!isNumber(before) || !isNumber(after) || after < before) return null;
    return (after - before) / seconds;
  }

  function validHistogram(h) {
    return (
      h &&
      Array.isArray(h.bounds_ms) &&
      Array.isArray(h.counts) &&
      h.bounds_ms.length > 0 &&
      h.counts.length === h.bounds_ms.length + 1
    );
  }

  // histogramDelta returns the bucket counts added between two cumulative
  // histograms, or null when they cannot be compared.
  function histogramDelta(before, after) {
    if (!validHistogram(before) || !validHistogram(after)) return null;
    if (before.bounds_ms.length !== after.bounds_ms.length) return null;
    for (let i = 0; i < after.bounds_ms.length; i++) {
      if (before.bounds_ms[i] !== after.bounds_ms[i]) return null;
    }
    const counts = after.counts.map((n, i) => number(n) - number(before.counts[i]));
    if (counts.some((n) => n < 0)) return null;
    return { bounds: after.bounds_ms, counts, count: counts.reduce((a, b) => a + b, 0) };
  }

  // quantile estimates the q-quantile of a bucketed histogram by linear
  // interpolation inside the bucket that contains it. A quantile in the +Inf
  // bucket is reported as above the last bound.
  function quantile(h, q) {
    if (!h || h.count <= 0) return null;
    const rank = q * h.count;
    let seen = 0;
    for (let i = 0; i < h.counts.length; i++) {
      const n = h.counts[i];
      if (n > 0 && seen + n >= rank) {
        if (i >= h.bounds.length) return { value: h.bounds[h.bounds.length - 1], above: true };
        const lower = i === 0 ? 0 : h.bounds[i - 1];
        const upper = h.bounds[i];
        return { value: lower + ((upper - lower) * (rank - seen)) / n, above: false };
      }
      seen += n;
    }
    return null;
  }

  // latency returns p50 and p99 over the last interval, or the cumulative
  // ones the node computed when the interval has no samples or no baseline.
  function latency(previous, current, name) {
    const after = object(object(current.latency)[name]);
    const before = previous ? object(object(previous.latency)[name]) : null;
    const delta = histogramDelta(before, after);
    if (delta && delta.count > 0) {
      return {
        p50: quantile(delta, 0.5),
        p99: quantile(delta, 0.99),
        source: "last interval, " + formatCount(delta.count) + " samples",
      };
    }
    const count = field(after, "count");
    if (isNumber(after.p50_ms) && (count === undefined || number(count) > 0)) {
      return {
        p50: { value: after.p50_ms, above: false },
        p99: isNumber(after.p99_ms) ? { value: after.p99_ms, above: false } : null,
        source: "since start",
      };
    }
    return { p50: null, p99: null, source: "no samples" };
  }

  function formatQuantile(qv) {
    if (!qv) return "-";
    return (qv.above ? "> " : "") + formatMs(qv.value);
  }

  // ---- charts ----

  function push(series, value) {
    series.push(isNumber(value) ? value : null);
    if (series.length > HISTORY) series.splice(0, series.length - HISTORY);
  }

  function cssValue(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }

  // drawChart draws each series as a line, newest point at the right edge,
  // on a scale from zero to the largest value shown. Missing points leave a
  // gap in the line.
  function drawChart(chart) {
    const canvas = byId(chart.canvas);
    if (!canvas || !canvas.getContext) return;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    let max = 0;
    for (const series of chart.series) {
      for (const v of series) if (v !== null && v > max) max = v;
    }
    const top = max > 0 ? max * 1.1 : 1;
    const pad = 14; // room for the scale label
    const plotHeight = height - pad - 2;
    const step = width / (HISTORY - 1);

    ctx.strokeStyle = cssValue("--grid");
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, pad + 0.5);
    ctx.lineTo(width, pad + 0.5);
    ctx.moveTo(0, height - 1.5);
    ctx.lineTo(width, height - 1.5);
    ctx.stroke();

    ctx.fillStyle = cssValue("--muted");
    ctx.font = "11px " + cssValue("--font");
    ctx.textBaseline = "top";
    let label = formatCount(max);
    if (!chart.integer && max > 0 && max < 10) label = max.toPrecision(2);
    ctx.fillText("max " + label, 2, 0);

    chart.series.forEach((series, index) => {
      ctx.strokeStyle = cssValue(chart.colors[index]);
      ctx.lineWidth = 1.5;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let drawing = false;
      const offset = HISTORY - series.length;
      series.forEach((v, i) => {
        if (v === null) {
          drawing = false;
          return;
        }
        const x = (offset + i) * step;
        const y = pad + plotHeight - (v / top) * plotHeight;
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        drawing = true;
      });
      ctx.stroke();
    });
  }

  function drawCharts() {
    for (const chart of Object.values(charts)) drawChart(chart);
  }

  // ---- sections ----

  function renderHeader(snap) {
    setText("node", snap.node || "-");
    setText("role", snap.role || "-");
    setText("uptime", formatDuration(snap.uptime_seconds));
    document.title = "Iris " + (snap.node || "node");
  }

  function renderRates(snap, baseline) {
    const names = ["received", "delivered", "redelivered", "rejected", "rate_limited", "acked"];
    if (baseline.seconds > 0) {
      for (const name of names) {
        state.rates[name] = counterRate(baseline.previous, snap, name, baseline.seconds);
      }
    }
    // Without a baseline the figures keep their last values and the chart
    // gets a gap.
    const rates = state.rates;
    if (isNumber(rates.received)) setText("rate-in", plainRate(rates.received));
    if (isNumber(rates.delivered)) setText("rate-out", plainRate(rates.delivered));
    setText("rate-redelivered", formatRate(rates.redelivered));
    setText("rate-rejected", formatRate(rates.rejected));
    setText("rate-limited", formatRate(rates.rate_limited));
    setText("rate-acked", formatRate(rates.acked));
    push(charts.rates.series[0], baseline.seconds > 0 ? rates.received : null);
    push(charts.rates.series[1], baseline.seconds > 0 ? rates.delivered : null);
  }

  function renderSessions(snap) {
    const sessions = object(snap.sessions);
    const transports = Object.keys(sessions).sort();
    const sum = transports.reduce((acc, t) => acc + number(sessions[t]), 0);
    setText("sessions", String(Math.round(sum)));

    const list = byId("sessions-by-transport");
    const items = transports.map((t) => {
      const li = document.createElement("li");
      const value = document.createElement("b");
      value.textContent = formatCount(number(sessions[t]));
      li.append(t + " ", value);
      return li;
    });
    list.replaceChildren(...items);
    push(charts.sessions.series[0], sum);
  }

  function renderLatency(snap, baseline) {
    const delivery = latency(baseline.previous, snap, "delivery");
    setText("delivery-p50", formatQuantile(delivery.p50));
    setText("delivery-p99", formatQuantile(delivery.p99));
    setText("delivery-source", delivery.source);
    push(charts.deliveryP99.series[0], delivery.p99 ? delivery.p99.value : null);

    const store = latency(baseline.previous, snap, "store_write");
    setText("store-p50", formatQuantile(store.p50));
    setText("store-p99", formatQuantile(store.p99));
    setText("store-source", store.source);
  }

  function renderActors(snap) {
    const actors = object(snap.actors);
    const kinds = Object.keys(actors).sort();
    let mailboxes = 0;
    const rows = kinds.map((kind) => {
      const a = object(actors[kind]);
      mailboxes += number(a.mailbox);
      return [kind, formatCount(a.live), formatCount(a.mailbox)];
    });
    fillTable("actors", rows, "no actor counts from this node", 3);
    setText("actors-total", formatCount(snap.actors_total));
    setText("mailbox-total", kinds.length > 0 ? formatCount(mailboxes) : "-");
    push(charts.mailbox.series[0], kinds.length > 0 ? mailboxes : null);
  }

  function renderSupervision(snap) {
    const sup = snap.supervision;
    const restarts = object(field(sup, "restarts", "Restarts"));
    setText("restarts-total", sup ? formatCount(total(restarts)) : "-");
    setText("abnormal-exits", sup ? formatCount(total(field(sup, "abnormal_exits", "AbnormalExits"))) : "-");
    setText("escalations", sup ? formatCount(total(field(sup, "escalations", "Escalations"))) : "-");

    const top = Object.entries(restarts)
      .filter(([, n]) => number(n) > 0)
      .sort((a, b) => number(b[1]) - number(a[1]) || a[0].localeCompare(b[0]))
      .slice(0, TOP_RESTARTS)
      .map(([child, n]) => [child, formatCount(n)]);
    fillTable("restarts-top", top, sup ? "no restarts" : "no supervision counts from this node", 2);
  }

  function renderQueuesAndRuntime(snap) {
    setText("dead-letters", formatCount(snap.dead_letters));
    setText("inbox-backlog", formatCount(snap.inbox_backlog));
    setText("heap", formatBytes(snap.heap_bytes));
    setText("goroutines", formatCount(snap.goroutines));
  }

  function renderRaft(snap) {
    let cores = [];
    if (Array.isArray(snap.raft)) cores = snap.raft.filter((r) => r && typeof r === "object");
    else if (snap.raft && typeof snap.raft === "object") cores = [snap.raft];
    byId("raft-card").hidden = cores.length === 0;

    const rows = cores.map((r) => {
      const applied = number(r.applied_index);
      const commit = number(r.commit_index);
      const lag = isNumber(r.lag) ? r.lag : Math.max(0, commit - applied);
      const voters = Array.isArray(r.voters) ? r.voters.join(", ") : "-";
      return [
        r.id || "-",
        r.state || "-",
        { text: r.leader || "none (election)", title: r.leader_addr || "" },
        formatCount(r.term),
        voters,
        formatCount(applied),
        formatCount(commit),
        formatCount(lag),
      ];
    });
    fillTable("raft", rows, "", 8);
  }

  // memberRow returns the table row of one member. The raft columns come
  // from the member's own record, so every node shows every core's state.
  // They are "-" for a member that sent none. A member this node no longer
  // reaches keeps its last raft state, greyed out.
  function memberRow(m) {
    const unreachable = m.reachable === false;
    const raft = m.raft && typeof m.raft === "object" ? m.raft : null;
    const leader = raft !== null && raft.state === "Leader";
    const age = formatAge(m.record_age_ms);

    let state = { text: raft ? raft.state || "-" : "-", className: leader ? "state-leader" : "" };
    if (unreachable) {
      state = {
        text: "unreachable",
        title: (raft ? "last state " + (raft.state || "-") + ", " : "") + "record read " + age + " ago",
        className: "state-unreachable",
      };
    }
    let raftCells = ["-", "-", "-", "-", "-", "-"];
    if (raft) {
      const applied = number(raft.applied_index);
      const commit = number(raft.commit_index);
      raftCells = [
        raft.id || "-",
        raft.leader || "none (election)",
        formatCount(raft.term),
        formatCount(applied),
        formatCount(commit),
        formatCount(isNumber(raft.lag) ? raft.lag : Math.max(0, commit - applied)),
      ];
    }
    let className = "";
    if (unreachable) className = "unreachable";
    else if (leader) className = "leader";
    return {
      className,
      cells: [
        (m.id || "-") + (m.self === true ? " (this node)" : ""),
        m.address || "-",
        Array.isArray(m.kinds) && m.kinds.length > 0 ? m.kinds.join(", ") : "-",
        raftCells[0],
        state,
        ...raftCells.slice(1),
        age,
      ],
    };
  }

  function renderMembers(snap) {
    const members = Array.isArray(snap.members) ? snap.members : [];
    const rows = members.filter((m) => m && typeof m === "object").map(memberRow);
    fillTable("members", rows, "no member list: this node is the whole cluster or sees no other member", 11);
  }

  function renderCounters(snap, baseline) {
    const counters = object(snap.counters);
    const rows = Object.keys(counters)
      .sort()
      .map((name) => [name, formatCount(counters[name]), formatRate(counterRate(baseline.previous, snap, name, baseline.seconds))]);
    fillTable("counters", rows, "no counters", 3);
  }

  const sections = [
    renderHeader,
    renderRates,
    renderSessions,
    renderLatency,
    renderActors,
    renderSupervision,
    renderQueuesAndRuntime,
    renderRaft,
    renderMembers,
    renderCounters,
  ];

  // ---- applying events ----

  // sameProcess reports whether two snapshots come from one run of one
  // node, so their counters can be compared.
  function sameProcess(previous, current) {
    return (
      previous !== null &&
      previous.node === current.node &&
      number(current.uptime_seconds) >= number(previous.uptime_seconds)
    );
  }

  function apply(snap) {
    const now = performance.now();
    const previous = sameProcess(state.previous, snap) ? state.previous : null;
    const baseline = { previous, seconds: previous ? elapsedSeconds(previous, snap, now) : 0 };

    // One section that cannot read an odd field must not stop the others.
    for (const render of sections) {
      try {
        render(snap, baseline);
      } catch (err) {
        console.error("dashboard: " + render.name + " failed", err);
      }
    }
    drawCharts();

    state.previous = snap;
    state.previousAt = now;
    state.updates++;
    setText("updates", String(state.updates));
    document.body.dataset.live = "1";
  }

  function setStatus(text) {
    const el = byId("status");
    el.dataset.state = text;
    el.textContent = text;
  }

  // eventsURL passes the page's own ?interval= on to /events, so
  // /?interval=500 gives a page that updates twice a second.
  function eventsURL() {
    const interval = new URLSearchParams(window.location.search).get("interval");
    return interval ? "events?interval=" + encodeURIComponent(interval) : "events";
  }

  function connect() {
    const source = new EventSource(eventsURL());
    source.onopen = () => {
      // Counters may have moved a lot while the stream was down, so the next
      // rates start from a fresh baseline.
      state.previous = null;
      setStatus("live");
    };
    source.onmessage = (event) => {
      let snap;
      try {
        snap = JSON.parse(event.data);
      } catch (err) {
        console.error("dashboard: event is not JSON", err);
        return;
      }
      if (snap === null || typeof snap !== "object") return;
      setStatus("live");
      apply(snap);
    };
    source.onerror = () => {
      setStatus("disconnected");
      // EventSource retries by itself while it is CONNECTING. It gives up
      // (CLOSED) after a response that is not a 200 event stream, for
      // example a 502 from a proxy, so the page starts a new one.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, RECONNECT_MS);
      }
    };
  }

  window.addEventListener("resize", drawCharts);
  connect();
})();
