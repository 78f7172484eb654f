// <script src="https://<zhixun-host>/embed.js" async></script> adds a floating 智能咨询 button that opens the chat.
(function () {
  "use strict";
  if (window.__zhixunEmbedded) return;
  window.__zhixunEmbedded = true;
  var origin = "__ZHIXUN_ORIGIN__";
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "智能咨询";
  button.setAttribute("aria-label", "打开政务服务智能咨询");
  button.style.cssText = "position:fixed;right:16px;bottom:16px;z-index:2147483000;border:0;border-radius:24px;" +
    "padding:10px 18px;background:#c62f2f;color:#fff;font-size:15px;box-shadow:0 2px 8px rgba(0,0,0,.3);cursor:pointer";
  var frame = document.createElement("iframe");
  frame.title = "智询 · 政务服务咨询";
  frame.src = origin + "/";
  frame.style.cssText = "position:fixed;right:16px;bottom:70px;z-index:2147483000;width:min(400px,calc(100vw - 32px));" +
    "height:min(640px,calc(100vh - 90px));border:0;border-radius:12px;box-shadow:0 4px 16px rgba(0,0,0,.3);display:none;background:#fff";
  button.addEventListener("click", function () { frame.style.display = frame.style.display === "none" ? "block" : "none"; });
  document.body.appendChild(frame);
  document.body.appendChild(button);
})();
