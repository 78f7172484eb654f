// Zhixun agent console. Text from citizens goes into the page through textContent only.
(function () {
  "use strict";
  var REASONS = { requested: "市民要求转人工", complaint: "投诉/不满", repeated_miss: "机器人两次未答好" };
  var ROLES = { citizen: "市民", bot: "智能助手", agent: "工作人员", system: "系统" };
  var csrf = "", me = null, current = null, socket = null, retry = 0, refreshTimer = null;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function api(method, path, body) {
    var options = { method: method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
    return fetch(path, options).then(function (response) {
      if (response.status === 401) { location.href = "/console/login?next=/console"; throw new Error("登录已过期"); }
      return response.json().then(function (data) {
        if (!response.ok) throw new Error((data.error && data.error.message) || "操作失败");
        return data;
      });
    });
  }
  function notice(text) { $("notice").textContent = text || ""; }
  function waited(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + "分" + s + "秒" : s + "秒";
  }

  function itemNode(item, canAccept) {
    var box = el("div", "item");
    box.setAttribute("data-escalation-id", item.id);
    box.setAttribute("data-conversation-id", item.conversation_id);
    if (current && current.escalation.id === item.id) box.classList.add("selected");
    if (canAccept) {
      var accept = el("button", "accept", "接入");
      accept.type = "button";
      accept.addEventListener("click", function (event) { event.stopPropagation(); acceptItem(item.id); });
      box.appendChild(accept);
    }
    box.appendChild(el("div", null, item.title || "（未匹配到事项）"));
    box.appendChild(el("div", "why", REASONS[item.reason] || item.reason));
    var meta = (item.status === "active" ? "接待中" : "已等待 " + waited(item.waited_seconds));
    if (item.after_hours) meta += " · 非工作时间留言";
    if (item.callback_phone) meta += " · 请回电 " + item.callback_phone;
    if (item.note) meta += " · 备注：" + item.note;
    box.appendChild(el("div", "muted", meta));
    box.addEventListener("click", function () { openItem(item.id); });
    return box;
  }

  function renderBoard(board) {
    var nav = $("queues");
    nav.textContent = "";
    nav.appendChild(el("h3", null, "我的会话（" + board.mine.length + "/" + me.capacity + "）"));
    board.mine.forEach(function (item) { nav.appendChild(itemNode(item, false)); });
    if (board.transferred_to_me.length) {
      nav.appendChild(el("h3", null, "转给我的"));
      board.transferred_to_me.forEach(function (item) { nav.appendChild(itemNode(item, true)); });
    }
    board.queues.forEach(function (queue) {
      var section = el("section", "queue");
      section.setAttribute("data-queue-id", queue.id);
      section.appendChild(el("h3", null, queue.name + "（等待 " + queue.waiting.length + "）"));
      queue.waiting.forEach(function (item) { section.appendChild(itemNode(item, true)); });
      nav.appendChild(section);
    });
  }
  function refreshBoard() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () { api("GET", "/api/console/board").then(renderBoard).catch(function (e) { notice(e.message); }); }, 50);
  }

  function lineNode(line) {
    var li = el("li", line.role);
    li.setAttribute("data-seq", line.seq);
    var who = ROLES[line.role] || line.role;
    if (line.role === "agent" && line.payload && line.payload.agent_name) who += " " + line.payload.agent_name;
    if (line.role !== "system") li.appendChild(el("span", "who", who + " · " + new Date(line.created_at).toLocaleTimeString("zh-CN")));
    li.appendChild(document.createTextNode(line.text));
    return li;
  }
  function addLine(line) {
    var list = $("transcript");
    if (list.querySelector('[data-seq="' + line.seq + '"]')) return;
    list.appendChild(lineNode(line));
    list.scrollTop = list.scrollHeight;
  }

  function renderConversation(detail) {
    current = detail;
    var e = detail.escalation;
    $("chat").hidden = false; $("context").hidden = false;
    $("chat-title").textContent = (e.title || "未匹配事项") + " · " + e.queue_name;
    $("chat-meta").textContent = (REASONS[e.reason] || e.reason) + (e.status === "active" ? " · 接待人 " + e.agent_name : " · 等待中");
    var list = $("transcript"); list.textContent = "";
    detail.lines.forEach(addLine);
    var mine = e.status === "active" && e.agent === me.username;
    ["reply", "actions", "closing"].forEach(function (id) { $(id).hidden = !mine; });
    $("match").textContent = detail.match ? detail.match.title + "（" + detail.match.department + "）" : "无";
    var candidates = $("candidates"); candidates.textContent = "";
    detail.candidates.forEach(function (c) {
      var li = el("li", null, c.title + " " + Math.round(c.score * 100) + "%");
      if (mine) {
        var insert = el("button", null, "插入"); insert.type = "button";
        insert.addEventListener("click", function () { sendKB(c.kb_id); });
        li.appendChild(insert);
      }
      candidates.appendChild(li);
    });
    var scenario = $("scenario"); scenario.textContent = "";
    ((detail.scenario && detail.scenario.answers) || []).forEach(function (a) {
      scenario.appendChild(el("dt", null, a.question)); scenario.appendChild(el("dd", null, a.answer));
    });
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ follow: e.id }));
    // Video callback (console/static/video.js): its button and the conversation's recordings.
    if (window.ZhixunVideo) window.ZhixunVideo.conversation(detail, mine, { api: api, csrf: function () { return csrf; }, notice: notice });
    refreshBoard();
  }
  function openItem(id) { notice(""); return api("GET", "/api/console/escalations/" + id).then(renderConversation).catch(function (e) { notice(e.message); }); }
  function acceptItem(id) {
    notice("");
    api("POST", "/api/console/escalations/" + id + "/accept").then(function () { return openItem(id); }).catch(function (e) { notice(e.message); refreshBoard(); });
  }
  function act(path, body, then) {
    notice("");
    return api("POST", "/api/console/escalations/" + current.escalation.id + path, body).then(then).catch(function (e) { notice(e.message); });
  }
  function sendText(text) {
    text = (text || "").trim();
    if (!text) return;
    act("/messages", { text: text }, function (line) { addLine(line); $("reply-text").value = ""; });
  }
  function sendKB(kbId) { act("/messages", { kb_id: kbId }, addLine); }
  function finished() { current = null; $("chat").hidden = true; $("context").hidden = true; refreshBoard(); }

  $("reply").addEventListener("submit", function (event) { event.preventDefault(); sendText($("reply-text").value); });
  $("reply-text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); sendText(this.value); }
  });
  $("canned").addEventListener("change", function () { if (this.value) { $("reply-text").value = this.value; this.value = ""; $("reply-text").focus(); } });
  $("insert-kb").addEventListener("click", function () { var id = $("kb-id").value.trim(); if (id) sendKB(id); });
  $("transfer").addEventListener("click", function () {
    var target = $("transfer-target").value;
    if (!target) { notice("请选择要转接的部门或工作人员。"); return; }
    var body = { note: $("transfer-note").value };
    if (target.indexOf("agent:") === 0) body.to_agent = target.slice(6); else body.queue_id = target.slice(6);
    act("/transfer", body, finished);
  });
  $("return").addEventListener("click", function () { act("/return", undefined, finished); });
  $("close").addEventListener("click", function () {
    var summary = $("close-summary").value.trim();
    if (!summary) { notice("请填写服务小结。"); return; }
    act("/close", { summary: summary, category: $("close-category").value }, function () { $("close-summary").value = ""; finished(); });
  });
  $("status").addEventListener("change", function () { api("POST", "/api/console/status", { status: this.value }).catch(function (e) { notice(e.message); }); });

  function loadDirectory() {
    api("GET", "/api/console/directory").then(function (dir) {
      var select = $("transfer-target");
      dir.queues.forEach(function (q) { var o = el("option", null, "部门：" + q.name); o.value = "queue:" + q.id; select.appendChild(o); });
      dir.agents.forEach(function (a) { var o = el("option", null, "同事：" + a.display_name); o.value = "agent:" + a.username; select.appendChild(o); });
    });
    api("GET", "/api/console/canned").then(function (replies) {
      replies.forEach(function (r) { var o = el("option", null, (r.personal ? "我的·" : "") + r.title); o.value = r.text; $("canned").appendChild(o); });
    });
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/console/ws");
    socket.onopen = function () {
      retry = 0; $("live").textContent = "实时连接正常";
      if (current) socket.send(JSON.stringify({ follow: current.escalation.id }));
      refreshBoard();
    };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.type === "escalation") {
        refreshBoard();
        if (current && frame.escalation.id === current.escalation.id && frame.event !== "accept") openItem(current.escalation.id);
      } else if (frame.type === "line" && current && frame.line.conversation_id === current.escalation.conversation_id) {
        addLine(frame.line);
      }
    };
    socket.onclose = function () {
      socket = null;
      var wait = Math.min(15000, 500 * Math.pow(2, retry++));
      $("live").textContent = "连接已断开，" + Math.round(wait / 1000) + " 秒后重连…";
      setTimeout(connect, wait);
    };
  }

  api("GET", "/api/console/me").then(function (data) {
    me = data.account; csrf = data.csrf_token;
    if (me.permissions.indexOf("supervise") >= 0) $("supervisor-link").hidden = false;
    document.querySelector("#logout input").value = csrf;
    $("me").textContent = me.display_name + "（" + me.username + "）";
    $("status").value = me.status === "offline" ? "online" : me.status;
    if (me.status === "offline") api("POST", "/api/console/status", { status: "online" });
    loadDirectory(); connect();
    setInterval(refreshBoard, 15000);  // waiting times tick on
  });
})();
