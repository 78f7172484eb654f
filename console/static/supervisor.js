// Zhixun supervisor console. Citizens' words go into the page through textContent only.
(function () {
  "use strict";
  var API = "/api/console/supervisor";
  var STATUS = { online: "在线", busy: "忙碌", away: "离开", offline: "离线" };
  var csrf = "", me = null, socket = null, retry = 0, liveTimer = null, kbCurrent = null;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) {
      var td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "—" : c;
      tr.appendChild(td);
    });
    return tr;
  }
  function api(method, path, body) {
    var options = { method: method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
    return fetch(path, options).then(function (response) {
      if (response.status === 401) { location.href = "/console/login?next=/console/supervisor"; throw new Error("登录已过期"); }
      return response.json().then(function (data) {
        if (!response.ok) {
          var error = new Error((data.error && data.error.message) || "操作失败");
          error.problems = (data.error && data.error.problems) || [];
          throw error;
        }
        return data;
      });
    });
  }
  function notice(text, ok) { var n = $("notice"); n.textContent = text || ""; n.className = ok ? "ok" : ""; }
  function fail(e) { notice(e.message); }
  function pct(x) { return x === null || x === undefined ? "—" : (Math.round(x * 1000) / 10) + "%"; }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    seconds = Math.round(seconds);
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + "分" + s + "秒" : s + "秒";
  }
  function localDay(offset) {
    var d = new Date(Date.now() + (offset || 0) * 86400000);
    return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
  }
  function rangeQuery(form) {
    var params = new URLSearchParams();
    if (form.since.value) params.set("since", form.since.value);
    if (form.until.value) params.set("until", form.until.value);
    return params;
  }

  // Tabs --------------------------------------------------------------------------------------------------
  var loaders = {};
  function show(tab) {
    document.querySelectorAll("#tabs [role=tab]").forEach(function (b) { b.setAttribute("aria-selected", String(b.getAttribute("data-tab") === tab)); });
    document.querySelectorAll("main .tab").forEach(function (s) { s.hidden = s.id !== "tab-" + tab; });
    notice("");
    if (loaders[tab] && !loaders[tab].done) { loaders[tab].done = true; loaders[tab](); }
  }
  document.querySelectorAll("#tabs [role=tab]").forEach(function (b) {
    b.addEventListener("click", function () { show(b.getAttribute("data-tab")); });
  });

  // Live view and today's figures --------------------------------------------------------------------------
  function card(container, label, value, hint) {
    var box = el("div", "card");
    box.appendChild(el("div", "label", label));
    box.appendChild(el("div", "value", value));
    if (hint) box.appendChild(el("div", "muted", hint));
    container.appendChild(box);
  }
  function figureCards(container, f) {
    container.textContent = "";
    card(container, "会话数", String(f.conversations));
    card(container, "机器人解决率", pct(f.bot_resolved_share), f.bot_resolved + " 个会话未转人工且得到明确答复");
    card(container, "转人工率", pct(f.escalation_rate), f.escalated + " 个会话转人工");
    card(container, "平均等待", duration(f.average_wait_seconds), f.accepted + " 次接入");
    card(container, "平均评分", f.average_rating === null ? "—" : f.average_rating + " 星", f.ratings + " 条评价");
    card(container, "满意率", pct(f.satisfied_share), "4–5 星占比");
  }
  function renderLive(data) {
    $("live-at").textContent = "更新于 " + new Date(data.at).toLocaleTimeString("zh-CN");
    var qb = $("queues-table").querySelector("tbody"); qb.textContent = "";
    data.queues.forEach(function (q) {
      var tr = row([q.name, q.open ? "值班中" : "非工作时间", String(q.waiting), q.waiting ? duration(q.longest_wait_seconds) : "—", String(q.active)]);
      tr.setAttribute("data-queue-id", q.id);
      if (q.longest_wait_seconds >= 300) tr.className = "alert";
      qb.appendChild(tr);
    });
    var ab = $("agents-table").querySelector("tbody"); ab.textContent = "";
    data.agents.forEach(function (a) {
      var status = el("span", "status " + a.status, STATUS[a.status] || a.status);
      var tr = row([a.display_name + "（" + a.username + "）", status, a.active_chats + " / " + a.capacity, pct(a.load)]);
      tr.setAttribute("data-agent", a.username);
      ab.appendChild(tr);
    });
  }
  function refreshLive() {
    clearTimeout(liveTimer);
    liveTimer = setTimeout(function () {
      api("GET", API + "/live").then(renderLive).catch(fail);
      api("GET", API + "/figures?since=" + localDay(0) + "&until=" + localDay(0)).then(function (data) { figureCards($("today-cards"), data.today); }).catch(fail);
    }, 100);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/console/ws");
    socket.onopen = function () { retry = 0; $("live-state").textContent = "实时连接正常"; refreshLive(); };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.type === "escalation") refreshLive();
    };
    socket.onclose = function () {
      socket = null;
      var wait = Math.min(15000, 500 * Math.pow(2, retry++));
      $("live-state").textContent = "连接已断开，" + Math.round(wait / 1000) + " 秒后重连…";
      setTimeout(connect, wait);
    };
  }

  // Figures over a range -----------------------------------------------------------------------------------
  function loadStats() {
    var form = document.querySelector("form[data-for=stats]");
    api("GET", API + "/figures?" + rangeQuery(form)).then(function (data) {
      var r = data.range;
      figureCards($("range-cards"), r.total);
      var body = $("days-table").querySelector("tbody"); body.textContent = "";
      r.days.slice().reverse().forEach(function (d) {
        body.appendChild(row([d.day, String(d.conversations), pct(d.bot_resolved_share), pct(d.escalation_rate), duration(d.average_wait_seconds), String(d.ratings), d.average_rating, pct(d.satisfied_share)]));
      });
    }).catch(fail);
  }
  loaders.stats = loadStats;

  // Failed questions ---------------------------------------------------------------------------------------
  function clusterNode(c) {
    var box = el("article", "cluster");
    box.setAttribute("data-cluster-id", c.id);
    var head = el("h3");
    head.appendChild(el("span", "size", c.size + " 次"));
    head.appendChild(document.createTextNode(c.representative));
    box.appendChild(head);
    var meta = c.conversations + " 个会话";
    if (c.repeated_miss) meta += " · " + c.repeated_miss + " 次连续未答好转人工";
    meta += " · 最近 " + new Date(c.last_seen).toLocaleString("zh-CN");
    box.appendChild(el("div", "muted", meta));
    var guess = el("div", "guess");
    guess.textContent = c.top_guess ? "机器人最常猜测：" + (c.top_guess.title || c.top_guess.kb_id) + "（" + c.top_guess.kb_id + "）" : "机器人没有猜测";
    box.appendChild(guess);
    var list = el("ul", "examples");
    c.examples.forEach(function (q) { list.appendChild(el("li", null, q)); });
    box.appendChild(list);
    if (me.permissions.indexOf("edit_kb") >= 0) {
      var actions = el("div", "row");
      var question = el("select");
      c.questions.forEach(function (q) { var o = el("option", null, q); o.value = q; question.appendChild(o); });
      question.value = c.representative;
      var target = el("input");
      target.placeholder = "事项编号";
      target.value = c.top_guess ? c.top_guess.kb_id : "";
      var add = el("button", null, "加为该事项的问法");
      add.type = "button";
      add.addEventListener("click", function () {
        var kbId = target.value.trim();
        if (!kbId) { notice("请填写要补充问法的事项编号。"); return; }
        api("POST", API + "/kb/entries/" + encodeURIComponent(kbId) + "/questions", { question: question.value, note: "从未答好问题聚类补充问法：" + question.value })
          .then(function (saved) { notice("已为 " + saved.id + " 补充问法，保存为第 " + saved.version + " 版，已即时生效。", true); box.classList.add("done"); })
          .catch(fail);
      });
      var draft = el("button", null, "起草新事项");
      draft.type = "button";
      draft.addEventListener("click", function () {
        api("POST", API + "/kb/draft", { questions: c.questions, like: c.top_guess ? c.top_guess.kb_id : null }).then(function (d) {
          show("kb"); openDraft(d.yaml, "据聚类「" + c.representative + "」起草");
        }).catch(fail);
      });
      [question, target, add, draft].forEach(function (n) { actions.appendChild(n); });
      box.appendChild(actions);
    }
    return box;
  }
  function loadFailed() {
    var form = document.querySelector("form[data-for=failed]");
    $("failed-summary").textContent = "分析中…";
    api("GET", API + "/failed?" + rangeQuery(form)).then(function (data) {
      $("failed-summary").textContent = "共 " + data.failed + " 个未答好的问题，聚为 " + data.clusters.length + " 类";
      var box = $("clusters"); box.textContent = "";
      if (!data.clusters.length) box.appendChild(el("p", "muted", "这段时间没有未答好的问题。"));
      data.clusters.forEach(function (c) { box.appendChild(clusterNode(c)); });
    }).catch(function (e) { $("failed-summary").textContent = ""; fail(e); });
  }
  loaders.failed = loadFailed;

  // Keywords -----------------------------------------------------------------------------------------------
  function loadKeywords() {
    var form = document.querySelector("form[data-for=keywords]");
    api("GET", API + "/keywords?" + rangeQuery(form)).then(function (data) {
      $("keywords-summary").textContent = "统计了 " + data.lines + " 条市民发言";
      var body = $("keywords-table").querySelector("tbody"); body.textContent = "";
      data.keywords.forEach(function (k, i) { body.appendChild(row([String(i + 1), k.word, String(k.count), String(k.conversations)])); });
    }).catch(fail);
  }
  loaders.keywords = loadKeywords;

  // Knowledge base -----------------------------------------------------------------------------------------
  var FORM_TEXT = ["title", "department", "summary", "where", "hours", "fees", "time_limit", "online_link", "local_note"];
  var FORM_LINES = ["conditions", "questions"];
  function mode() { return document.querySelector("input[name=kb-mode]:checked").value; }
  function setMode(value) {
    document.querySelector("input[name=kb-mode][value=" + value + "]").checked = true;
    $("kb-form").hidden = value !== "form"; $("kb-yaml").hidden = value !== "yaml";
  }
  document.querySelectorAll("input[name=kb-mode]").forEach(function (r) {
    r.addEventListener("change", function () {
      if (kbCurrent && kbCurrent.entry && mode() === "yaml") notice("注意：表单中未保存的修改不会带到 YAML 中。");
      setMode(mode());
    });
  });
  function problems(list) {
    var ul = $("kb-problems"); ul.textContent = "";
    (list || []).forEach(function (p) { ul.appendChild(el("li", null, (p.line ? "第 " + p.line + " 行 · " : "") + p.field + "：" + p.message)); });
  }
  function searchKB() {
    var q = document.querySelector("#kb-search input").value.trim();
    api("GET", API + "/kb/entries?q=" + encodeURIComponent(q)).then(function (data) {
      var ul = $("kb-entries"); ul.textContent = "";
      data.entries.forEach(function (e) {
        var li = el("li");
        li.setAttribute("data-kb-id", e.id);
        li.appendChild(el("div", null, e.title));
        li.appendChild(el("div", "muted", e.id + " · 第" + e.version + "版 · " + (e.updated_by || "")));
        li.addEventListener("click", function () { openEntry(e.id); });
        ul.appendChild(li);
      });
      if (!data.entries.length) ul.appendChild(el("li", "muted", "没有找到事项"));
    }).catch(fail);
  }
  loaders.kb = searchKB;
  $("kb-search").addEventListener("submit", function (event) { event.preventDefault(); searchKB(); });

  function fillForm(entry) {
    var form = $("kb-form");
    FORM_TEXT.forEach(function (k) { form[k].value = entry[k] || ""; });
    FORM_LINES.forEach(function (k) { form[k].value = (entry[k] || []).join("\n"); });
  }
  function openEntry(id) {
    notice(""); problems([]);
    return api("GET", API + "/kb/entries/" + encodeURIComponent(id)).then(function (data) {
      kbCurrent = data;
      $("kb-edit").hidden = false;
      $("kb-title").textContent = data.entry.title + "（" + data.id + "）";
      $("kb-meta").textContent = "当前第 " + data.version + " 版";
      fillForm(data.entry);
      $("kb-yaml").value = data.yaml;
      $("kb-note").value = "";
      document.querySelector("input[name=kb-mode][value=form]").disabled = false;
      setMode("form");
      loadHistory(id);
    }).catch(fail);
  }
  function openDraft(yamlText, note) {
    kbCurrent = { id: null, version: 0, entry: null, yaml: yamlText };
    $("kb-edit").hidden = false;
    $("kb-title").textContent = "新建事项";
    $("kb-meta").textContent = "请把所有「待补充」改为实际内容后保存；保存后立即生效。";
    $("kb-yaml").value = yamlText;
    $("kb-note").value = note || "";
    document.querySelector("input[name=kb-mode][value=form]").disabled = true;
    setMode("yaml");
    problems([]);
    $("kb-history").querySelector("tbody").textContent = "";
    $("kb-version-view").hidden = true;
  }
  $("kb-new").addEventListener("click", function () {
    api("POST", API + "/kb/draft", { questions: ["待补充：市民问法1"] }).then(function (d) { openDraft(d.yaml, "新建事项"); }).catch(fail);
  });
  function loadHistory(id) {
    api("GET", API + "/kb/entries/" + encodeURIComponent(id) + "/history").then(function (data) {
      var body = $("kb-history").querySelector("tbody"); body.textContent = "";
      $("kb-version-view").hidden = true;
      data.versions.forEach(function (v) {
        var view = el("button", null, "查看"); view.type = "button";
        view.addEventListener("click", function () {
          api("GET", API + "/kb/entries/" + encodeURIComponent(id) + "/versions/" + v.version).then(function (d) {
            var pre = $("kb-version-view"); pre.hidden = false; pre.textContent = "第 " + d.version + " 版\n" + d.yaml;
          }).catch(fail);
        });
        body.appendChild(row(["第" + v.version + "版", new Date(v.created_at).toLocaleString("zh-CN"), v.created_by, v.note, view]));
      });
    }).catch(fail);
  }
  $("kb-save").addEventListener("click", function () {
    if (!kbCurrent) return;
    var note = $("kb-note").value.trim();
    if (!note) { notice("请填写修改说明。"); return; }
    var body = { note: note };
    if (mode() === "yaml") body.yaml = $("kb-yaml").value;
    else {
      var entry = JSON.parse(JSON.stringify(kbCurrent.entry)), form = $("kb-form");
      FORM_TEXT.forEach(function (k) { entry[k] = form[k].value; });
      FORM_LINES.forEach(function (k) { entry[k] = form[k].value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean); });
      body.entry = entry;
    }
    problems([]);
    var request = kbCurrent.id
      ? api("PUT", API + "/kb/entries/" + encodeURIComponent(kbCurrent.id), Object.assign(body, { base_version: kbCurrent.version }))
      : api("POST", API + "/kb/entries", body);
    request.then(function (saved) {
      notice(saved.changed ? "已保存为第 " + saved.version + " 版，已即时生效。" : "内容没有变化，未产生新版本。", true);
      openEntry(saved.id); searchKB();
    }).catch(function (e) { fail(e); problems(e.problems); });
  });

  // Exports ------------------------------------------------------------------------------------------------
  $("export-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var params = rangeQuery(this);
    params.set("mask", this.mask.checked ? "true" : "false");
    location.href = API + "/export/transcripts.jsonl?" + params;
  });
  $("export-list").addEventListener("click", function () {
    var form = $("export-form"), mask = form.mask.checked ? "true" : "false";
    api("GET", API + "/conversations?" + rangeQuery(form)).then(function (data) {
      var body = $("conversations-table").querySelector("tbody"); body.textContent = "";
      data.conversations.forEach(function (c) {
        var links = el("span", "links");
        ["json", "html", "pdf"].forEach(function (fmt) {
          var a = el("a", null, fmt.toUpperCase());
          a.href = API + "/conversations/" + encodeURIComponent(c.id) + "/export." + fmt + "?mask=" + mask;
          if (fmt === "html") a.target = "_blank";
          links.appendChild(a);
        });
        body.appendChild(row([new Date(c.created_at).toLocaleString("zh-CN"), c.channel, String(c.lines), c.escalated ? "是" : "否", c.first_question || "—", links]));
      });
      if (!data.conversations.length) body.appendChild(row(["这段时间没有会话", "", "", "", "", ""]));
    }).catch(fail);
  });

  // Start --------------------------------------------------------------------------------------------------
  document.querySelectorAll("form.range input[name=since]").forEach(function (i) { i.value = localDay(-6); });
  document.querySelectorAll("form.range input[name=until]").forEach(function (i) { i.value = localDay(0); });
  document.querySelectorAll("form.range[data-for]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      ({ stats: loadStats, failed: loadFailed, keywords: loadKeywords })[form.getAttribute("data-for")]();
    });
  });

  api("GET", "/api/console/me").then(function (data) {
    me = data.account; csrf = data.csrf_token;
    document.querySelector("#logout input").value = csrf;
    $("me").textContent = me.display_name + "（" + me.username + "）";
    document.querySelectorAll("#tabs [data-needs]").forEach(function (b) {
      if (me.permissions.indexOf(b.getAttribute("data-needs")) < 0) b.hidden = true;
    });
    if (me.permissions.indexOf("view_pii") < 0) {
      var mask = $("export-form").mask; mask.checked = true; mask.disabled = true;
    }
    refreshLive(); connect();
    setInterval(refreshLive, 5000);  // waits tick on, and agents' status changes are not pushed
  }).catch(fail);
})();
