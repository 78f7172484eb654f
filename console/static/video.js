// Zhixun console: video callback. The agent invites, makes the WebRTC offer, records the call (the citizen's
// video with both voices mixed) and uploads it in chunks; hang-up finalises the recording on the server.
// console.js calls ZhixunVideo.conversation(detail, mine, ctx) whenever a conversation is shown.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var ctx = null, detail = null, call = null;
  window.__zhixunVideo = null;  // the call in progress, for tests: .pc, .state, .uploaded

  var style = document.createElement("link");
  style.rel = "stylesheet"; style.href = "/console/static/video.css";
  document.head.appendChild(style);

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function panel() {
    var box = $("video-panel");
    if (box) return box;
    box = el("div"); box.id = "video-panel"; box.hidden = true;
    box.innerHTML =
      '<div class="stage"><video id="video-remote" autoplay playsinline></video>' +
      '<video id="video-local" autoplay playsinline muted></video><span id="video-rec" hidden>● 录制中</span></div>' +
      '<div class="row"><span id="video-status" class="muted"></span><button type="button" id="video-hangup">挂断</button></div>';
    $("chat").insertBefore(box, $("transcript"));
    $("video-hangup").addEventListener("click", function () { if (call) call.hangUp(); });
    return box;
  }
  function setStatus(text, state) {
    $("video-status").textContent = text;
    if (state) $("video-panel").setAttribute("data-state", state);
  }
  function recordingsBox() {
    var box = $("video-recordings");
    if (!box) {
      box = el("div"); box.id = "video-recordings";
      $("chat").insertBefore(box, $("transcript"));
    }
    return box;
  }
  function showRecordings(calls) {
    var box = recordingsBox(); box.textContent = "";
    calls.filter(function (c) { return c.recording_url; }).forEach(function (c) {
      var a = el("a", null, "通话录像 " + new Date(c.created_at).toLocaleString("zh-CN") + "（" +
        Math.round(c.recording_duration_s || 0) + "秒，" + Math.round(c.recording_bytes / 1024) + "KB）");
      a.href = c.recording_url; a.target = "_blank"; a.rel = "noopener";
      a.setAttribute("data-call-id", c.id);
      box.appendChild(a);
    });
  }
  function refreshRecordings() {
    if (!detail) return;
    ctx.api("GET", "/api/console/escalations/" + detail.escalation.id + "/video").then(function (data) { showRecordings(data.calls); })
      .catch(function () {});
  }

  function pickType() {
    var types = ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm", "video/mp4"];
    for (var i = 0; i < types.length; i++) if (window.MediaRecorder && MediaRecorder.isTypeSupported(types[i])) return types[i];
    return "";
  }

  // One call, from the invitation to the finalised recording.
  function Call(invitation, local, audio) {
    var self = this, data = invitation.call, offered = false, pendingIce = [];
    var uploads = Promise.resolve(), seq = 0, failedUpload = null, recorder = null, startedAt = 0;
    self.id = data.id; self.state = "waiting"; self.uploaded = 0; self.local = local;
    var pc = self.pc = new RTCPeerConnection({ iceServers: invitation.ice_servers || [] });
    local.getTracks().forEach(function (t) { pc.addTrack(t, local); });
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + invitation.socket);

    function send(frame) { if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame)); }
    function offer() {
      if (offered) return;
      offered = true;
      pc.createOffer().then(function (o) { return pc.setLocalDescription(o); }).then(function () {
        send({ type: "offer", data: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
      }).catch(function (e) { setStatus("发起连接失败：" + e.message); });
    }
    pc.onicecandidate = function (event) { if (event.candidate) send({ type: "ice", data: event.candidate.toJSON() }); };
    pc.ontrack = function (event) {
      var remote = $("video-remote");
      if (remote.srcObject !== event.streams[0]) { remote.srcObject = event.streams[0]; remote.play().catch(function () {}); }
    };
    pc.onconnectionstatechange = function () {
      if (self.state === "ended") return;
      if (pc.connectionState === "connected") {
        self.state = "connected"; setStatus("已接通 · 正在录音录像", "connected");
        ctx.api("POST", "/api/console/video/" + self.id + "/start").catch(function (e) { ctx.notice(e.message); });
        record();
      } else if (pc.connectionState === "disconnected") setStatus("连接不稳定，正在恢复…");
      else if (pc.connectionState === "failed") setStatus("连接失败。可挂断后重新发起邀请。", "failed");
    };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.from === "citizen" && (frame.type === "hello" || frame.type === "here")) { setStatus("市民已进入，正在接通…"); offer(); }
      else if (frame.type === "answer") {
        pc.setRemoteDescription(frame.data).then(function () {
          pendingIce.splice(0).forEach(function (c) { pc.addIceCandidate(c).catch(function () {}); });
        });
      } else if (frame.type === "ice" && frame.data) {
        if (pc.remoteDescription) pc.addIceCandidate(frame.data).catch(function () {}); else pendingIce.push(frame.data);
      } else if (frame.type === "bye" && frame.from === "citizen") setStatus("市民的连接已中断");
      else if (frame.type === "hangup" && frame.from === "citizen") { setStatus("市民已挂断"); self.hangUp(); }
    };

    function upload(blob) {
      var n = seq++;
      uploads = uploads.then(function () {
        var attempt = function (left) {
          return fetch("/api/console/video/" + self.id + "/chunks?seq=" + n, {
            method: "POST", credentials: "same-origin", body: blob,
            headers: { "Content-Type": (blob.type || recorder.mimeType || "video/webm"), "X-CSRF-Token": ctx.csrf() },
          }).then(function (response) {
            if (response.ok) return response.json().then(function (r) { self.uploaded = r.bytes; });
            return response.json().then(function (r) { throw new Error((r.error && r.error.message) || "上传失败"); });
          }, function (e) {
            if (left > 0) return new Promise(function (ok) { setTimeout(ok, 1000); }).then(function () { return attempt(left - 1); });
            throw e;
          });
        };
        return attempt(3);
      }).catch(function (e) { failedUpload = e; ctx.notice("录像上传失败：" + e.message); });
    }
    function record() {
      if (recorder || !window.MediaRecorder) return;
      var remote = $("video-remote").srcObject;
      if (!remote) return;
      // The citizen's picture, with the citizen's and the agent's voices mixed into one track.
      var mix = audio.createMediaStreamDestination();
      [remote, local].forEach(function (s) { if (s.getAudioTracks().length) audio.createMediaStreamSource(s).connect(mix); });
      var tracks = remote.getVideoTracks().concat(mix.stream.getAudioTracks());
      var type = pickType();
      recorder = new MediaRecorder(new MediaStream(tracks), type ? { mimeType: type } : undefined);
      recorder.ondataavailable = function (event) { if (event.data && event.data.size) upload(event.data); };
      recorder.start(1000);
      startedAt = performance.now();
      $("video-rec").hidden = false;
    }

    self.hangUp = function () {
      if (self.state === "ended" || self.state === "ending") return self.done;
      self.state = "ending"; setStatus("正在结束通话并保存录像…", "ending");
      send({ type: "hangup" });
      var stopped = new Promise(function (resolve) {
        if (!recorder || recorder.state === "inactive") { resolve(); return; }
        recorder.onstop = function () { resolve(); };
        recorder.stop();
      });
      var duration = startedAt ? (performance.now() - startedAt) / 1000 : null;
      self.done = stopped.then(function () { return uploads; }).then(function () {
        return ctx.api("POST", "/api/console/video/" + self.id + "/end", duration === null ? {} : { duration_s: duration });
      }).then(function (ended) {
        self.state = "ended"; self.result = ended;
        var saved = ended.recording_sha256
          ? "录像已保存（" + Math.round(ended.recording_bytes / 1024) + "KB，" + Math.round(ended.recording_duration_s) + "秒）"
          : "未产生录像";
        setStatus("通话已结束 · " + saved + (failedUpload ? "（部分片段上传失败）" : ""), "ended");
        refreshRecordings();
      }).catch(function (e) { self.state = "ended"; setStatus("结束通话时出错：" + e.message, "ended"); });
      self.done.then(function () {
        socket.close(); pc.close();
        local.getTracks().forEach(function (t) { t.stop(); });
        $("video-rec").hidden = true;
        $("video-hangup").hidden = true; $("video-call").disabled = false;
        call = null;
      });
      return self.done;
    };
  }

  function start() {
    if (call || !detail) return;
    var button = $("video-call");
    button.disabled = true; ctx.notice("");
    var box = panel(); box.hidden = false; $("video-hangup").hidden = false;
    setStatus("正在打开摄像头…", "preparing");
    var audio = new (window.AudioContext || window.webkitAudioContext)();  // made on the click, so it may play
    var phone = ($("video-phone").value || "").trim();
    navigator.mediaDevices.getUserMedia({ video: true, audio: true }).then(function (local) {
      $("video-local").srcObject = local;
      return ctx.api("POST", "/api/console/escalations/" + detail.escalation.id + "/video", phone ? { phone: phone } : {})
        .then(function (invitation) {
          call = new Call(invitation, local, audio);
          window.__zhixunVideo = call;
          var sent = invitation.notified.length ? "，并已通过" + invitation.notified.map(function (c) { return c === "sms" ? "短信" : "微信"; }).join("、") + "发送" : "";
          setStatus("已向市民发送视频通话链接" + sent + "，等待市民进入…", "waiting");
        }, function (e) { local.getTracks().forEach(function (t) { t.stop(); }); throw e; });
    }).catch(function (e) {
      setStatus(e.name === "NotAllowedError" ? "无法使用摄像头或麦克风，请在浏览器中允许访问。" : e.message, "failed");
      button.disabled = false;
    });
  }

  window.ZhixunVideo = {
    conversation: function (d, mine, context) {
      ctx = context; detail = d;
      var button = $("video-call");
      if (button && !button.getAttribute("data-wired")) { button.setAttribute("data-wired", "1"); button.addEventListener("click", start); }
      if (button) button.disabled = !!call;
      refreshRecordings();
    },
    current: function () { return call; },
  };
})();
