// The candidate's interview page (issue #7): device check, the questions, WebRTC to the
// box's media service with a MediaRecorder upload as the fallback, and kiosk hygiene.
// State lives on the server (GET /interview/state): a reload resumes the current question.
// No inline script (strict CSP); every text shown comes from the server-rendered page.
"use strict";

(function () {
  const root = document.getElementById("iv");
  const kioskPage = document.querySelector("[data-kiosk='1']");
  const IDLE_MS = 180000; // kiosk: after 3 minutes without input the browser is cleaned
  let idleTimer = null;

  function leave() {
    stopMedia();
    try { window.sessionStorage.clear(); window.localStorage.clear(); } catch (e) { /* none */ }
    const form = document.getElementById("iv-leave");
    if (form) { form.submit(); } else { window.location.reload(); }
  }

  function armIdle() {
    if (!kioskPage) { return; }
    if (idleTimer) { clearTimeout(idleTimer); }
    idleTimer = setTimeout(leave, IDLE_MS);
  }
  ["pointerdown", "keydown", "touchstart"].forEach((ev) => document.addEventListener(ev, armIdle));
  if (kioskPage) {
    armIdle();
    document.addEventListener("pointerdown", () => {
      if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
        document.documentElement.requestFullscreen().catch(() => {});
      }
    }, { once: true });
  }
  if (!root) { return; }

  const csrf = root.dataset.csrf;
  const msg = (key) => {
    const el = document.querySelector(`#iv-msgs [data-msg="${key}"]`);
    return el ? el.textContent : key;
  };
  const advice = (key) => {
    const el = document.querySelector(`#iv-msgs [data-advice="${key}"]`);
    return el ? el.textContent : key;
  };
  const $ = (id) => document.getElementById(id);
  let stream = null;

  function stopMedia() {
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  }

  async function call(method, url, body, headers) {
    const init = { method, headers: Object.assign({ "X-CSRF-Token": csrf, Accept: "application/json" }, headers || {}), credentials: "same-origin" };
    if (body !== undefined) {
      if (body instanceof Blob || body instanceof ArrayBuffer) { init.body = body; }
      else { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    }
    const response = await fetch(url, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  function show(step) {
    document.querySelectorAll(".iv-step").forEach((s) => { s.hidden = true; });
    const ids = { device: "iv-device", question: "iv-question", done: "iv-done", no_recording: "iv-no-recording" };
    const el = $(ids[step]);
    if (el) { el.hidden = false; }
  }

  async function getMedia() {
    if (!stream) {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: true,
      });
    }
    return stream;
  }

  // --- device check ----------------------------------------------------------------------
  const results = {};

  function mark(check, ok) {
    results[check] = ok;
    const el = document.querySelector(`[data-check="${check}"] .iv-result`);
    if (el) { el.textContent = ok ? msg("ok") : msg("bad"); el.className = "iv-result " + (ok ? "iv-ok" : "iv-bad"); }
  }

  function browserSupported() {
    return Boolean(window.RTCPeerConnection && navigator.mediaDevices &&
      navigator.mediaDevices.getUserMedia && window.MediaRecorder &&
      (window.AudioContext || window.webkitAudioContext) && window.fetch);
  }

  async function measureRtt() {
    const times = [];
    for (let i = 0; i < 5; i += 1) {
      const t0 = performance.now();
      await fetch(root.dataset.probeUrl, { credentials: "same-origin", cache: "no-store" });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return times[2];
  }

  async function measureUpload() {
    const size = 1 << 20;
    const body = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) { crypto.getRandomValues(body.subarray(i, i + 65536)); }
    const t0 = performance.now();
    await call("POST", root.dataset.probeUrl, new Blob([body], { type: "application/octet-stream" }));
    const seconds = (performance.now() - t0) / 1000;
    return (size * 8) / 1000 / Math.max(seconds, 0.001);
  }

  function levelMeter(media) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(media).connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    let peak = 0;
    const meter = $("iv-level");
    const tick = () => {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const v of data) { sum += v * v; }
      const rms = Math.sqrt(sum / data.length);
      peak = Math.max(peak, rms);
      if (meter) { meter.value = Math.min(1, rms * 4); }
      if (stream) { requestAnimationFrame(tick); } else { ctx.close(); }
    };
    tick();
    return () => peak;
  }

  function playTone() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    const osc = ctx.createOscillator();
    osc.frequency.value = 660;
    osc.connect(ctx.destination);
    osc.start();
    setTimeout(() => { osc.stop(); ctx.close(); }, 800);
  }

  async function runCheck() {
    $("iv-run-check").disabled = true;
    mark("browser", browserSupported());
    let peak = () => 0;
    try {
      const media = await getMedia();
      $("iv-preview").srcObject = media;
      mark("camera", media.getVideoTracks().length > 0);
      peak = levelMeter(media);
    } catch (e) {
      mark("camera", false);
      mark("microphone", false);
    }
    try {
      const rtt = await measureRtt();
      $("iv-rtt").textContent = `${Math.round(rtt)} ms`;
      results.rtt_ms = rtt;
      mark("rtt", rtt <= 300);
      const kbps = await measureUpload();
      $("iv-bw").textContent = `${(kbps / 1000).toFixed(1)} Mbit/s`;
      results.upload_kbps = kbps;
      mark("bandwidth", kbps >= 1500);
    } catch (e) {
      mark("rtt", false);
      mark("bandwidth", false);
    }
    setTimeout(() => {
      if (results.microphone !== false) { mark("microphone", peak() > 0.01); }
      if (results.speaker === undefined) { mark("speaker", false); }
      $("iv-check-done").disabled = false;
      submitCheck(false);
    }, 3000);
  }

  async function submitCheck(go) {
    const payload = {
      browser: Boolean(results.browser), camera: Boolean(results.camera),
      microphone: Boolean(results.microphone), speaker: Boolean(results.speaker),
      rtt_ms: results.rtt_ms, upload_kbps: results.upload_kbps,
    };
    const r = await call("POST", root.dataset.checkUrl, payload);
    const list = $("iv-advice");
    list.textContent = "";
    ((r.data && r.data.advice) || []).forEach((a) => {
      const li = document.createElement("li");
      li.textContent = a.text || advice(a.check);
      list.appendChild(li);
    });
    if (go && r.ok && r.data.ok) { window.location.assign(root.dataset.pageUrl); }
  }

  // --- one take: WebRTC first, MediaRecorder upload as the fallback ------------------------
  let take = null; // {answerId, pc, recorder, parts, next, started}
  let countdown = null;

  // Against the clock, not by counting ticks: a busy kiosk PC delays timers, and the
  // answer time is the job's, not the browser's.
  function timer(seconds, label, done) {
    if (countdown) { clearInterval(countdown); }
    const end = performance.now() + seconds * 1000;
    $("iv-phase").textContent = label;
    $("iv-countdown").textContent = String(seconds);
    countdown = setInterval(() => {
      const left = Math.ceil((end - performance.now()) / 1000 - 0.05);
      $("iv-countdown").textContent = String(Math.max(left, 0));
      if (left <= 0) { clearInterval(countdown); countdown = null; done(); }
    }, 100);
  }

  function waitIce(pc) {
    if (pc.iceGatheringState === "complete") { return Promise.resolve(); }
    return new Promise((resolve) => {
      const check = () => { if (pc.iceGatheringState === "complete") { resolve(); } };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000);
    });
  }

  async function startWebRtc(answerId, media) {
    const pc = new RTCPeerConnection({ iceServers: [] }); // nothing outside the box
    media.getTracks().forEach((t) => pc.addTrack(t, media));
    await pc.setLocalDescription(await pc.createOffer());
    await waitIce(pc);
    const r = await call("POST", `${root.dataset.answersUrl}/${answerId}/offer`,
      { sdp: pc.localDescription.sdp, type: "offer" });
    if (!r.ok) { pc.close(); return null; }
    await pc.setRemoteDescription(r.data);
    const connected = await new Promise((resolve) => {
      const ok = () => { if (pc.connectionState === "connected") { resolve(true); } };
      pc.addEventListener("connectionstatechange", () => {
        ok();
        if (pc.connectionState === "failed") { resolve(false); }
      });
      ok();
      setTimeout(() => resolve(pc.connectionState === "connected"), 10000);
    });
    if (!connected) { pc.close(); return null; }
    return pc;
  }

  function recorderType() {
    const types = ["video/webm;codecs=vp8,opus", "video/webm", "video/mp4"];
    return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
  }

  async function pushParts() {
    // Sequential, resumable: on any failure ask the box where to resume and go on.
    if (!take || take.pushing) { return; }
    take.pushing = true;
    try {
      while (take.parts.length > take.next) {
        const blob = take.parts[take.next];
        const r = await call("PUT", `${root.dataset.answersUrl}/${take.answerId}/parts/${take.next}`,
          blob, { "Content-Type": blob.type.split(";")[0] });
        if (r.ok) { take.next = r.data.next; continue; }
        if (r.status === 409 && r.data && typeof r.data.next === "number") { take.next = r.data.next; continue; }
        throw new Error(String(r.status));
      }
    } catch (e) {
      $("iv-status").textContent = msg("failed");
      await new Promise((res) => setTimeout(res, 2000));
      const r = await call("GET", `${root.dataset.answersUrl}/${take.answerId}/parts`);
      if (r.ok) { take.next = r.data.next; }
      take.pushing = false;
      return pushParts();
    }
    take.pushing = false;
  }

  async function drain() {
    // Every recorded part is on the box before the take is closed.
    while (take.next < take.parts.length || take.pushing) {
      if (!take.pushing) { pushParts(); }
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  function startRecorder(media) {
    const type = recorderType();
    const recorder = new MediaRecorder(media, type ? { mimeType: type } : undefined);
    recorder.addEventListener("dataavailable", (ev) => {
      if (ev.data && ev.data.size > 0) { take.parts.push(ev.data); pushParts(); }
    });
    recorder.start(2000);
    return recorder;
  }

  async function beginAnswer() {
    $("iv-start-now").hidden = true;
    const r = await call("POST", root.dataset.answersUrl, {});
    if (!r.ok) { $("iv-status").textContent = (r.data && r.data.message) || ""; return; }
    const media = await getMedia();
    $("iv-self").srcObject = media;
    take = { answerId: r.data.answer_id, pc: null, recorder: null, parts: [], next: 0, started: Date.now() };
    try { take.pc = await startWebRtc(take.answerId, media); } catch (e) { take.pc = null; }
    if (take.pc) {
      watchConnection(take);
      if (current.question.captions) { showCaptions(take); }
    } else {
      $("iv-status").textContent = msg("fallback");
      take.recorder = startRecorder(media);
    }
    $("iv-finish").hidden = false;
    timer(current.question.answer_seconds, msg("answer"), finishAnswer);
  }

  // A wavering connection may recover by itself; a media service that lost the recording
  // (it crashed) does not. The box says which; on a loss the take ends and the candidate
  // answers the question again (what was received before the loss is kept on the box).
  function watchConnection(current) {
    const check = async () => {
      if (take !== current || current.finishing) { return; }
      const r = await call("GET", `${root.dataset.answersUrl}/${current.answerId}/media`);
      if (take === current && !current.finishing && r.ok && r.data && r.data.recording === false) {
        lostTake(current);
      }
    };
    current.pc.addEventListener("connectionstatechange", () => {
      if (["disconnected", "failed"].includes(current.pc.connectionState)) { check(); }
    });
    current.watch = setInterval(check, 3000);
  }

  // Live captions of the candidate's own answer (jobs that turn them on): shown here only.
  function showCaptions(current) {
    $("iv-caption").textContent = "";
    $("iv-captions").hidden = false;
    current.captions = setInterval(async () => {
      if (take !== current || current.finishing) { return; }
      const r = await call("GET", `${root.dataset.answersUrl}/${current.answerId}/caption`);
      if (take === current && r.ok && r.data) { $("iv-caption").textContent = r.data.text; }
    }, 1000);
  }

  function hideCaptions(current) {
    if (current.captions) { clearInterval(current.captions); }
    $("iv-captions").hidden = true;
  }

  async function lostTake(current) {
    hideCaptions(current);
    current.finishing = true;
    clearInterval(current.watch);
    if (countdown) { clearInterval(countdown); countdown = null; }
    $("iv-finish").hidden = true;
    try { current.pc.close(); } catch (e) { /* already closed */ }
    await call("POST", `${root.dataset.answersUrl}/${current.answerId}/stop`); // closes the take
    take = null;
    await refresh();
    $("iv-status").textContent = msg("lost");
  }

  async function finishAnswer() {
    if (!take || take.finishing) { return; }
    take.finishing = true;
    if (take.watch) { clearInterval(take.watch); }
    hideCaptions(take);
    if (countdown) { clearInterval(countdown); countdown = null; }
    $("iv-finish").hidden = true;
    $("iv-status").textContent = msg("uploading");
    const url = `${root.dataset.answersUrl}/${take.answerId}`;
    let r;
    if (take.pc) {
      r = await call("POST", `${url}/stop`);
      take.pc.close();
    } else {
      const duration = Date.now() - take.started;
      await new Promise((res) => { take.recorder.addEventListener("stop", res, { once: true }); take.recorder.stop(); });
      for (let tries = 0; tries < 10; tries += 1) {
        await drain();
        r = await call("POST", `${url}/parts/finish`, { parts: take.parts.length, duration_ms: duration });
        if (r.ok || !(r.data && typeof r.data.next === "number")) { break; }
        take.next = r.data.next; // the box lacks parts: resume from there
      }
    }
    // A 503 on stop: the media service went away during the answer (its recording is cut).
    const lost = take.pc && r.status === 503;
    $("iv-status").textContent = r.ok ? msg("saved") : msg(lost ? "lost" : "failed");
    take = null;
    await refresh();
  }

  // --- the question page -------------------------------------------------------------------
  let current = null;

  function renderQuestion(state) {
    const q = state.question;
    $("iv-pos").textContent = String(q.position + 1);
    $("iv-total").textContent = String(state.total);
    $("iv-progress").max = state.total;
    $("iv-progress").value = q.position;
    $("iv-text").textContent = q.text;
    $("iv-retakes").textContent = String(Math.max(0, q.takes_allowed - q.takes_used - (q.takes_used ? 0 : 1)));
    const recorded = state.take && state.take.recorded;
    $("iv-begin").hidden = Boolean(recorded) || Boolean(take);
    $("iv-retake").hidden = !(recorded && q.takes_used < q.takes_allowed);
    $("iv-next").hidden = !recorded;
  }

  async function refresh() {
    const r = await call("GET", root.dataset.stateUrl);
    if (!r.ok) {
      $("iv-status").textContent = (r.data && r.data.message) || "";
      return;
    }
    current = r.data;
    show(current.step);
    if (current.step === "question") { renderQuestion(current); }
    if (current.step === "done") {
      stopMedia();
      if (current.kiosk) { setTimeout(leave, 15000); } // the next candidate finds it clean
    }
  }

  function think() {
    $("iv-begin").hidden = true;
    $("iv-retake").hidden = true;
    $("iv-next").hidden = true;
    $("iv-start-now").hidden = false;
    timer(current.question.think_seconds, msg("think"), beginAnswer);
  }

  function speak() {
    if (window.speechSynthesis && current && current.question) {
      const u = new SpeechSynthesisUtterance(current.question.text);
      u.lang = document.documentElement.lang || "zh-CN";
      window.speechSynthesis.speak(u);
    }
  }

  async function next() {
    $("iv-next").hidden = true;
    await call("POST", root.dataset.nextUrl);
    await refresh();
  }

  $("iv-run-check").addEventListener("click", runCheck);
  $("iv-check-done").addEventListener("click", () => submitCheck(true));
  $("iv-tone").addEventListener("click", playTone);
  $("iv-heard").addEventListener("click", () => mark("speaker", true));
  $("iv-begin").addEventListener("click", think);
  $("iv-retake").addEventListener("click", think);
  $("iv-start-now").addEventListener("click", () => { if (countdown) { clearInterval(countdown); countdown = null; } beginAnswer(); });
  $("iv-finish").addEventListener("click", finishAnswer);
  $("iv-next").addEventListener("click", next);
  $("iv-speak").addEventListener("click", speak);
  $("iv-leave").addEventListener("submit", () => { stopMedia(); try { window.sessionStorage.clear(); window.localStorage.clear(); } catch (e) { /* none */ } });

  show(root.dataset.step);
  if (root.dataset.step !== "device") { refresh(); }
  // Heartbeat: keeps this browser's lease (one live interview per token).
  setInterval(() => { if (!take) { call("GET", root.dataset.stateUrl); } }, 20000);
})();
