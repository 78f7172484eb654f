// Zhixun web chat. Every piece of text — the citizen's and the KB's — goes into the page through
// textContent or attribute setters, never innerHTML, so nothing typed can become markup.
(function () {
  "use strict";
  var log = document.getElementById("log");
  var input = document.getElementById("input");
  var statusEl = document.getElementById("status");
  var FORM_LABELS = { original: "原件", copy: "复印件", original_and_copy: "原件及复印件", electronic: "电子材料", form: "申请表" };
  var conversationId = sessionStorage.getItem("zhixun.conversation") || null;
  var pending = [];      // frames not yet answered; re-sent after a reconnect
  var socket = null, retry = 0, typingEl = null, seq = 0, reconnectTimer = null;
  var lastSeq = Number(sessionStorage.getItem("zhixun.lastSeq") || 0);  // last agent/system line shown

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function add(node) { log.appendChild(node); log.scrollTop = log.scrollHeight; return node; }
  function section(card, title, items, ordered) {
    if (!items || !items.length) return;
    card.appendChild(el("h3", null, title));
    var list = el(ordered ? "ol" : "ul");
    items.forEach(function (item) { list.appendChild(typeof item === "string" ? el("li", null, item) : item); });
    card.appendChild(list);
  }
  function safeHref(url) { return /^(https?:\/\/|\/)/.test(url || "") ? url : null; }

  function renderCard(c) {
    var card = el("article", "card");
    card.setAttribute("data-kb-id", c.kb_id);
    card.appendChild(el("h2", null, c.title));
    card.appendChild(el("div", "dept", c.department));
    card.appendChild(el("p", null, c.summary));
    section(card, "办理条件", c.conditions);
    if (c.components && c.components.length) {
      section(card, "包含事项（按顺序办理）", c.components.map(function (comp) { return comp.note; }), true);
      if (c.joint_application) { card.appendChild(el("h3", null, "联办方式")); card.appendChild(el("p", null, c.joint_application)); }
    }
    section(card, "所需材料", c.materials.map(function (m) {
      var li = el("li", null, m.name);
      li.appendChild(el("span", "tag", (FORM_LABELS[m.form] || m.form) + " " + m.count + "份"));
      if (m.note) li.appendChild(el("div", "note", m.note));
      var sample = safeHref(m.sample);
      if (sample) { var a = el("a", null, "查看填写样表"); a.href = sample; a.target = "_blank"; a.rel = "noopener"; li.appendChild(a); }
      return li;
    }));
    section(card, "网上办理", c.steps.online, true);
    section(card, "窗口办理", c.steps.window, true);
    var facts = el("dl", "facts");
    [["办理地点", c.where], ["办理时间", c.hours], ["收费标准", c.fees], ["办结时限", c.time_limit]].forEach(function (pair) {
      facts.appendChild(el("dt", null, pair[0])); facts.appendChild(el("dd", null, pair[1]));
    });
    card.appendChild(facts);
    (c.images || []).forEach(function (image) {
      var src = safeHref(image.src); if (!src) return;
      var fig = el("figure"); var img = el("img"); img.src = src; img.alt = image.alt; img.loading = "lazy";
      fig.appendChild(img); if (image.caption) fig.appendChild(el("figcaption", null, image.caption));
      card.appendChild(fig);
    });
    var link = safeHref(c.online_link);
    if (link) { var go = el("a", "go", "去网上办理 ›"); go.href = link; go.target = "_blank"; go.rel = "noopener"; card.appendChild(go); }
    var more = el("details"); more.appendChild(el("summary", null, "办理依据与说明"));
    more.appendChild(el("p", null, (c.legal_basis || []).join("；")));
    more.appendChild(el("p", "note", c.local_note + "（信息更新于 " + c.last_reviewed + "）"));
    card.appendChild(more);
    return card;
  }

  function renderButtons(m) {
    var box = el("div", "buttons msg bot");
    box.appendChild(el("p", null, m.text));
    var row = el("div", "choices");
    m.buttons.forEach(function (b) {
      var href = safeHref(b.url);
      // A link made for this conversation only (a video call invitation): say which conversation opens it.
      if (href && b.bind_conversation && conversationId) href += (href.indexOf("?") < 0 ? "?" : "&") + "c=" + encodeURIComponent(conversationId);
      if (href) {
        var link = el("a", "choice-link", b.title); link.href = href; link.target = "_blank"; link.rel = "noopener";
        row.appendChild(link); return;
      }
      var button = el("button", null, b.title);
      button.type = "button";
      button.addEventListener("click", function () { send(b.title, b.payload); });
      row.appendChild(button);
    });
    box.appendChild(row);
    return box;
  }

  function renderChecklist(m) {
    var c = m.checklist;
    var card = el("article", "card checklist");
    card.setAttribute("data-checklist-id", c.id);
    card.appendChild(el("h2", null, c.title + "材料清单"));
    card.appendChild(el("div", "dept", "您的情形：" + c.situation));
    section(card, "需要准备的材料（共" + c.materials.length + "项）", c.materials.map(function (item) {
      var li = el("li", null, item.name);
      li.appendChild(el("span", "tag", item.form_label + " " + item.count + "份"));
      if (item.for_item) li.appendChild(el("div", "note", "用于：" + item.for_item));
      if (item.note) li.appendChild(el("div", "note", item.note));
      if (item.sample_fields && item.sample_fields.length) {
        var sample = el("details", "sample"); sample.appendChild(el("summary", null, "填写样例"));
        var dl = el("dl", "facts");
        item.sample_fields.forEach(function (f) { dl.appendChild(el("dt", null, f.label)); dl.appendChild(el("dd", null, f.example)); });
        sample.appendChild(dl); li.appendChild(sample);
      }
      return li;
    }), true);
    section(card, "温馨提示", c.notes);
    var more = el("details"); more.appendChild(el("summary", null, "办理依据"));
    more.appendChild(el("p", null, (c.legal_basis || []).join("；"))); card.appendChild(more);
    var links = el("div", "choices");
    [["打印清单", m.print_url, false], ["下载PDF", m.pdf_url, true]].forEach(function (spec) {
      var href = safeHref(spec[1]); if (!href) return;
      var a = el("a", "choice-link", spec[0]); a.href = href;
      if (spec[2]) a.setAttribute("download", ""); else { a.target = "_blank"; a.rel = "noopener"; }
      links.appendChild(a);
    });
    card.appendChild(links);
    return card;
  }

  function renderReply(frame) {
    if (frame.conversation_id) { conversationId = frame.conversation_id; sessionStorage.setItem("zhixun.conversation", conversationId); }
    var firstCard = null;
    frame.replies.forEach(function (m) {
      if (m.type === "kb_card") { var card = add(renderCard(m)); firstCard = firstCard || card; }
      else if (m.type === "checklist") { var list = add(renderChecklist(m)); firstCard = firstCard || list; }
      else if (m.type === "buttons") add(renderButtons(m));
      else add(el("div", "msg bot", m.text));
    });
    // A long answer card is read from its title, not from its end.
    if (firstCard) log.scrollTop = firstCard.offsetTop - log.offsetTop - 8;
  }
  // A person's message or a queue notice, pushed while an agent handles the conversation.
  function renderLine(line) {
    if (line.seq <= lastSeq) return;
    lastSeq = line.seq; sessionStorage.setItem("zhixun.lastSeq", String(lastSeq));
    if (line.role === "agent") {
      var bubble = add(el("div", "msg agent"));
      bubble.appendChild(el("span", "who", "工作人员" + (line.agent_name ? " " + line.agent_name : "")));
      bubble.appendChild(el("div", null, line.text));
      (line.rich || []).forEach(function (m) {
        if (m.type === "kb_card") add(renderCard(m));
        else if (m.type === "buttons") add(renderButtons(m));
      });
    } else {
      add(el("div", "msg notice", line.text));
    }
    if (line.rate && line.escalation_id) add(renderRating(line.escalation_id));
  }
  function renderRating(escalationId) {
    var box = el("form", "msg bot rating");
    box.appendChild(el("p", null, "请为本次人工服务评价："));
    var stars = el("div", "choices"), chosen = 0;
    ["非常不满意", "不满意", "一般", "满意", "非常满意"].forEach(function (label, i) {
      var b = el("button", null, (i + 1) + "星 " + label); b.type = "button";
      b.setAttribute("data-score", String(i + 1));
      b.addEventListener("click", function () {
        chosen = i + 1;
        Array.prototype.forEach.call(stars.children, function (x) { x.classList.toggle("chosen", Number(x.getAttribute("data-score")) <= chosen); });
      });
      stars.appendChild(b);
    });
    box.appendChild(stars);
    var comment = el("textarea"); comment.maxLength = 500; comment.rows = 2; comment.placeholder = "意见建议（选填）";
    box.appendChild(comment);
    var submit = el("button", "submit", "提交评价"); submit.type = "submit"; box.appendChild(submit);
    box.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!chosen) { submit.textContent = "请先选择星级"; return; }
      fetch("/api/chat/" + conversationId + "/rating", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ escalation_id: escalationId, score: chosen, comment: comment.value })
      }).then(function (r) { return r.json(); }).then(function (data) {
        box.textContent = ""; box.appendChild(el("p", null, data.message || (data.error && data.error.message) || "感谢您的评价！"));
      });
    });
    return box;
  }
  function setTyping(on) {
    if (on && !typingEl) typingEl = add(el("div", "typing", "正在输入"));
    if (!on && typingEl) { typingEl.remove(); typingEl = null; }
  }
  function settle(clientId) {
    pending = pending.filter(function (p) { return p.frame.client_id !== clientId; });
    if (!pending.length) setTyping(false);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/chat");
    socket.onopen = function () {
      retry = 0; statusEl.textContent = "在线";
      if (conversationId) socket.send(JSON.stringify({ type: "resume", conversation_id: conversationId, after: lastSeq }));
      pending.forEach(function (p) { p.frame.conversation_id = conversationId; socket.send(JSON.stringify(p.frame)); });
    };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.type === "typing") { setTyping(true); return; }
      if (frame.type === "line") { renderLine(frame.line); return; }
      var item = pending.filter(function (p) { return p.frame.client_id === frame.client_id; })[0];
      if (item) item.bubble.classList.remove("pending");
      settle(frame.client_id);
      if (frame.type === "reply") renderReply(frame);
      else if (frame.type === "error") {
        if (frame.error.code === "unknown_conversation") { conversationId = null; lastSeq = 0; sessionStorage.removeItem("zhixun.conversation"); sessionStorage.removeItem("zhixun.lastSeq"); }
        add(el("div", "msg error", frame.error.message));
      }
    };
    socket.onclose = function () {
      socket = null; setTyping(false);
      if (!navigator.onLine) { statusEl.textContent = "网络已断开，恢复后自动重连…"; return; }  // "online" reconnects
      var wait = Math.min(15000, 500 * Math.pow(2, retry++));
      statusEl.textContent = "网络已断开，" + Math.round(wait / 1000) + " 秒后重连…";
      reconnectTimer = setTimeout(connect, wait);
    };
  }
  // Phones switch networks: drop a socket that can no longer deliver, reconnect as soon as we are back.
  window.addEventListener("offline", function () { if (socket) socket.close(); });
  window.addEventListener("online", function () {
    clearTimeout(reconnectTimer); retry = 0;
    if (!socket) connect();
  });

  function send(text, payload) {
    text = (text || "").trim();
    if (!text) return;
    var frame = { text: text, client_id: "c" + Date.now() + "-" + (seq++) };
    if (payload) frame.payload = payload;
    if (conversationId) frame.conversation_id = conversationId;
    var bubble = add(el("div", "msg user pending", text));
    pending.push({ frame: frame, bubble: bubble });
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  document.getElementById("composer").addEventListener("submit", function (event) {
    event.preventDefault(); send(input.value); input.value = ""; input.focus();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(input.value); input.value = ""; }
  });
  Array.prototype.forEach.call(document.querySelectorAll("#hot button"), function (button) {
    button.addEventListener("click", function () { send(button.textContent); });
  });
  add(el("div", "msg bot", "您好，我是智询政务服务助手。请问您想办什么事？可以直接输入问题，或点下方的热门问题。"));
  connect();
})();
