// Zhixun video callback, the citizen's side: consent first, then camera, then the WebRTC call with the agent.
// The agent's console makes the offer; this page answers. Signalling: /ws/video/<call id>?key=<key from the claim>.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var token = decodeURIComponent(location.pathname.split("/").pop() || "");
  var conversationId = new URLSearchParams(location.search).get("c");
  var state = { pc: null, socket: null, local: null, callId: null, ended: false, pendingIce: [] };
  window.__zhixunVideo = state;  // for tests and support staff: state.pc.connectionState

  function show(id) { ["consent", "call", "ended"].forEach(function (s) { $(s).hidden = s !== id; }); }
  function status(text) { $("call-status").textContent = text; }
  function fail(text) { var e = $("error"); e.textContent = text; e.hidden = false; $("agree").disabled = false; }

  function send(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
  }

  function finish(reason) {
    if (state.ended) return;
    state.ended = true;
    if (state.socket) state.socket.close();
    if (state.pc) state.pc.close();
    if (state.local) state.local.getTracks().forEach(function (t) { t.stop(); });
    $("ended-reason").textContent = reason;
    document.body.setAttribute("data-state", "ended");
    show("ended");
  }

  function newPeer(iceServers) {
    if (state.pc) state.pc.close();
    var pc = new RTCPeerConnection({ iceServers: iceServers || [] });
    state.pc = pc; state.pendingIce = [];
    state.local.getTracks().forEach(function (t) { pc.addTrack(t, state.local); });
    pc.onicecandidate = function (event) { if (event.candidate) send({ type: "ice", data: event.candidate.toJSON() }); };
    pc.ontrack = function (event) {
      var remote = $("remote");
      if (remote.srcObject !== event.streams[0]) { remote.srcObject = event.streams[0]; remote.play().catch(function () {}); }
    };
    pc.onconnectionstatechange = function () {
      document.body.setAttribute("data-state", pc.connectionState);
      if (pc.connectionState === "connected") { status("已接通，工作人员正在为您服务"); $("recording").hidden = false; }
      else if (pc.connectionState === "disconnected") status("网络不稳定，正在重新连接…");
      else if (pc.connectionState === "failed") status("连接失败，请检查网络后重新请工作人员发送邀请。");
    };
    return pc;
  }

  function onSignal(frame, iceServers) {
    if (frame.type === "hello" && frame.from === "agent") { send({ type: "here" }); status("工作人员已上线，正在接通…"); }
    else if (frame.type === "offer") {
      var pc = state.pc && !state.pc.remoteDescription ? state.pc : newPeer(iceServers);
      pc.setRemoteDescription(frame.data).then(function () {
        state.pendingIce.splice(0).forEach(function (c) { pc.addIceCandidate(c).catch(function () {}); });
        return pc.createAnswer();
      }).then(function (answer) { return pc.setLocalDescription(answer); }).then(function () {
        send({ type: "answer", data: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
      }).catch(function () { status("接通失败，请稍后重试。"); });
    } else if (frame.type === "ice" && frame.data) {
      if (state.pc && state.pc.remoteDescription) state.pc.addIceCandidate(frame.data).catch(function () {});
      else state.pendingIce.push(frame.data);
    } else if (frame.type === "bye" && frame.from === "agent") status("工作人员的连接已中断，正在等待重新连接…");
    else if (frame.type === "hangup") finish("工作人员已结束本次视频通话，感谢您的耐心。");
  }

  function connect(claim) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + claim.socket + "?key=" + encodeURIComponent(claim.key));
    state.socket = socket;
    socket.onmessage = function (event) { onSignal(JSON.parse(event.data), claim.ice_servers); };
    socket.onclose = function () {
      if (state.ended) return;
      status("连接已断开，正在重连…");
      setTimeout(function () { if (!state.ended) connect(claim); }, 2000);
    };
  }

  $("agree").addEventListener("click", function () {
    $("agree").disabled = true; $("error").hidden = true;
    if (!navigator.mediaDevices || !window.RTCPeerConnection) {
      fail("您的浏览器不支持视频通话，请使用手机自带浏览器或微信打开此链接。");
      return;
    }
    // The camera first: if it is refused, the link is not used up and can be opened again.
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: true }).then(function (stream) {
      state.local = stream;
      $("local").srcObject = stream;
      return fetch("/api/video/claim", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token, conversation_id: conversationId }),
      }).then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error((data.error && data.error.message) || "无法进入视频通话。");
          return data;
        });
      });
    }, function () {
      throw new Error("无法使用摄像头或麦克风。请在浏览器设置中允许本页面访问后，再点「同意并开始」。");
    }).then(function (claim) {
      state.callId = claim.call_id;
      $("status").textContent = "工作人员" + (claim.agent_name || "");
      show("call"); status("正在连接工作人员…");
      document.body.setAttribute("data-state", "waiting");
      newPeer(claim.ice_servers);
      connect(claim);
    }).catch(function (error) {
      if (state.local) { state.local.getTracks().forEach(function (t) { t.stop(); }); state.local = null; }
      fail(error.message);
    });
  });

  $("hangup").addEventListener("click", function () {
    send({ type: "hangup" });
    finish("您已挂断本次视频通话，感谢您的耐心。");
  });
})();
