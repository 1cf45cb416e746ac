// parley.js: a small browser client for parleyd speaking parley.v1 (docs/PROTOCOL.md):
// accounts over the HTTP API (register, login), the WebSocket session (auth, requests
// matched by id, pushes), 1:1 calls (call.* frames, RTCPeerConnection with the
// iceServers parleyd hands out, TURN relay if asked) and group calls in SFU rooms
// (room.* frames, docs/SFU.md "Browser recipe": the client offers once with what it
// publishes, then answers the SFU's offers).
//
// What it does not do: chat, reconnecting, glare with the SFU beyond a rollback,
// renegotiation of 1:1 calls, or any UI (index.html has a minimal one).
//
// Used by index.html and by the browser tests (tests/browser/), which drive it through
// window.parley.
(function () {
  'use strict';

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function http(method, path, body, token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const json = await res.json().catch(() => null);
    if (!res.ok) throw new Error((json && json.error && json.error.code) || ('http ' + res.status));
    return json;
  }

  // Keeps only the TURN URLs of one transport ('udp' or 'tcp'); null keeps everything.
  function pickIceServers(servers, turnTransport) {
    if (!turnTransport) return servers;
    const out = [];
    for (const s of servers) {
      const urls = (Array.isArray(s.urls) ? s.urls : [s.urls])
        .filter((u) => u.startsWith('turn:') && u.endsWith('?transport=' + turnTransport));
      if (urls.length) out.push({ ...s, urls });
    }
    return out;
  }

  // The selected ICE path in a getStats() report: {pairState, localType, localProtocol}
  // (localType 'relay' and localProtocol 'tcp': media goes through TURN over TCP).
  function selectedPath(st, pairId) {
    if (!pairId) st.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId && st.get(pairId);
    if (!pair) return { pairState: null, localType: null, localProtocol: null };
    const local = st.get(pair.localCandidateId);
    return { pairState: pair.state, localType: local && local.candidateType, localProtocol: local && local.relayProtocol };
  }

  class Parley {
    constructor() {
      this.ws = null; this.n = 0; this.pending = new Map(); this.pushes = [];
      this.listeners = new Map(); this.session = null; this.call = null; this.room = null;
      this.localStream = null;
    }

    // ---- accounts and the session --------------------------------------------------
    async register(username, password, device_name = 'browser') {
      this.session = await http('POST', '/v1/register', { username, password, device_name });
      return this.session;
    }
    async login(username, password, device_name = 'browser') {
      this.session = await http('POST', '/v1/login', { username, password, device_name });
      return this.session;
    }
    async connect(token = this.session && this.session.token) {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      this.ws = new WebSocket(`${proto}//${location.host}/ws`, 'parley.v1');
      this.ws.onmessage = (m) => this._frame(JSON.parse(m.data));
      await new Promise((res, rej) => { this.ws.onopen = res; this.ws.onerror = rej; });
      const r = await this.request({ type: 'auth', token });
      this.me = r;
      return r;
    }
    request(frame) {
      const id = ++this.n;
      this.ws.send(JSON.stringify({ ...frame, id }));
      return new Promise((res, rej) => this.pending.set(id, { res, rej }));
    }
    on(type, fn) { this.listeners.set(type, fn); }
    _frame(f) {
      if (f.id !== undefined && this.pending.has(f.id)) {
        const p = this.pending.get(f.id);
        this.pending.delete(f.id);
        if (f.type === 'error') { const e = new Error(f.code + ': ' + f.message); e.code = f.code; p.rej(e); } else p.res(f);
        return;
      }
      this.pushes.push(f);
      if (f.type.startsWith('call.') && this.call) this._callPush(f);
      if (f.type === 'room.event' && this.room) this._roomEvent(f.event);
      const fn = this.listeners.get(f.type);
      if (fn) fn(f);
    }
    async media() {
      if (!this.localStream)
        this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      return this.localStream;
    }
    _attach(track, into) {
      const el = document.createElement(track.kind);
      el.muted = true; el.autoplay = true; el.playsInline = true;
      el.srcObject = new MediaStream([track]);
      (into || document.getElementById('remote') || document.body).appendChild(el);
      return el;
    }

    // ---- 1:1 calls -------------------------------------------------------------------
    // opts: { relay: bool (iceTransportPolicy 'relay'), turnTransport: 'udp'|'tcp'|null }
    _newCallPc(iceServers, opts) {
      const servers = pickIceServers(iceServers, opts.turnTransport);
      const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: opts.relay ? 'relay' : 'all' });
      pc.onicecandidate = (e) => {
        const c = e.candidate ? e.candidate.toJSON() : { candidate: '' };
        this.request({ type: 'call.ice', call_id: this.call.id, candidate: c }).catch(() => {});
      };
      pc.ontrack = (e) => this._attach(e.track);
      return pc;
    }
    async _addLocal(pc) {
      const s = await this.media();
      for (const t of s.getTracks()) pc.addTrack(t, s);
    }
    async invite(calleeUsername, opts = {}) {
      const r = await this.request({ type: 'call.invite', callee: calleeUsername, media: 'video' });
      this.call = { id: r.call_id, opts, queue: Promise.resolve(), caller: true, iceServers: r.ice_servers };
      return r;
    }
    // Accepts the next ringing call (waits for call.ring).
    async acceptNext(opts = {}) {
      let ring;
      while (!(ring = this.pushes.find((f) => f.type === 'call.ring' && !f.taken))) await sleep(50);
      ring.taken = true;
      this.call = { id: ring.call_id, opts, queue: Promise.resolve(), caller: false };
      const r = await this.request({ type: 'call.accept', call_id: ring.call_id });
      this.call.pc = this._newCallPc(r.ice_servers, opts);
      return r;
    }
    _callPush(f) {
      const c = this.call;
      if (f.call_id !== c.id) return;
      c.queue = c.queue.then(() => this._callStep(f)).catch((e) => { c.error = String(e); });
    }
    async _callStep(f) {
      const c = this.call;
      if (f.type === 'call.accepted' && c.caller) {      // the caller offers
        c.pc = this._newCallPc(c.iceServers, c.opts);
        await this._addLocal(c.pc);
        await c.pc.setLocalDescription();
        await this.request({ type: 'call.sdp', call_id: c.id, sdp_type: 'offer', sdp: c.pc.localDescription.sdp });
      } else if (f.type === 'call.sdp' && f.sdp_type === 'offer') {
        await c.pc.setRemoteDescription({ type: 'offer', sdp: f.sdp });
        await this._addLocal(c.pc);
        await c.pc.setLocalDescription();
        await this.request({ type: 'call.sdp', call_id: c.id, sdp_type: 'answer', sdp: c.pc.localDescription.sdp });
      } else if (f.type === 'call.sdp' && f.sdp_type === 'answer') {
        await c.pc.setRemoteDescription({ type: 'answer', sdp: f.sdp });
      } else if (f.type === 'call.ice' && c.pc && f.candidate.candidate) {
        await c.pc.addIceCandidate(f.candidate);
      } else if (f.type === 'call.ended') {
        c.ended = f.reason;
        if (c.pc) c.pc.close();
      }
    }
    async hangup() {
      if (!this.call) return;
      await this.request({ type: 'call.hangup', call_id: this.call.id }).catch(() => {});
      if (this.call.pc) this.call.pc.close();
      this.call = null;
    }
    // Media received and the ICE path of the call: {frames, width, audio, localType}.
    async callStats() {
      const pc = this.call && this.call.pc;
      const out = { frames: 0, width: 0, audio: 0, localType: null, pairState: null };
      if (!pc) return out;
      const st = await pc.getStats();
      let pairId = null;
      st.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') { out.frames += s.framesDecoded || 0; out.width = s.frameWidth || 0; }
        if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio += s.packetsReceived || 0;
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      return Object.assign(out, selectedPath(st, pairId));
    }

    // ---- group calls (SFU rooms) -------------------------------------------------------
    // room: an ad-hoc room id, or a chat group id (number).
    // opts: { simulcast: bool, display: string, ring: bool (group calls),
    //         relay: bool (iceTransportPolicy 'relay'), turnTransport: 'udp'|'tcp'|null }
    async join(room, opts = {}) {
      // room.event pushes may arrive before room.join.result: the room exists first.
      const rm = { id: room, pc: null, tracks: {}, events: [], queue: Promise.resolve(), sent: false, early: [] };
      this.room = rm;
      // A number is a chat group's id: the room "g<id>" (members only); ring: true
      // rings the other members (room.ring).
      const frame = typeof room === 'number' ? { type: 'room.join', group_id: room, ring: !!opts.ring } : { type: 'room.join', room };
      if (opts.display) frame.display = opts.display;
      let r;
      try { r = await this.request(frame); } catch (e) { this.room = null; throw e; }
      rm.participant = r.participant;
      const s = await this.media();
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require',
        iceServers: pickIceServers(r.ice_servers, opts.turnTransport), iceTransportPolicy: opts.relay ? 'relay' : 'all' });
      rm.pc = pc;
      pc.addTransceiver(s.getAudioTracks()[0], { direction: 'sendonly', streams: [s] });
      pc.addTransceiver(s.getVideoTracks()[0], { direction: 'sendonly', streams: [s],
        sendEncodings: opts.simulcast ? [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }] : undefined });
      pc.onicecandidate = (e) => {
        const f = { type: 'room.ice', candidate: e.candidate ? e.candidate.candidate : '', mid: e.candidate ? (e.candidate.sdpMid || '') : '' };
        if (rm.sent) this.request(f).catch(() => {}); else rm.early.push(f);
      };
      pc.ontrack = (e) => this._attach(e.track);
      await pc.setLocalDescription();
      await this.request({ type: 'room.sdp', sdp_type: 'offer', sdp: pc.localDescription.sdp });
      rm.sent = true;
      for (const f of rm.early.splice(0)) this.request(f).catch(() => {});
      return r;
    }
    _roomEvent(ev) {
      const rm = this.room;
      rm.events.push(ev);
      rm.queue = rm.queue.then(() => this._roomStep(rm, ev)).catch((e) => rm.events.push({ type: 'page.error', message: String(e) }));
    }
    async _roomStep(rm, ev) {
      if (ev.type === 'sfu.answer') {
        await rm.pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp });
        if (rm.onAnswer) { rm.onAnswer.res(); rm.onAnswer = null; }
      }
      if (ev.type === 'sfu.error' && rm.onAnswer) {     // e.g. the offer was refused
        rm.onAnswer.rej(new Error(`${ev.code}: ${ev.message}`));
        rm.onAnswer = null;
      }
      if (ev.type === 'sfu.offer') {
        for (const t of ev.tracks) rm.tracks[t.mid] = t;
        await rm.pc.setRemoteDescription({ type: 'offer', sdp: ev.sdp });
        await rm.pc.setLocalDescription();
        await this.request({ type: 'room.sdp', sdp_type: 'answer', sdp: rm.pc.localDescription.sdp });
      }
    }
    // ICE restart (after a network change: new Wi-Fi, mobile data): a new offer with new
    // ICE credentials; the SFU answers with its own new ones and the checks find the new
    // path while DTLS and SRTP carry on. Queued behind any negotiation in progress (an
    // SFU offer being answered). Resolves with the SFU's new ice-ufrag.
    async restartIce() {
      const rm = this.room;
      if (!rm) throw new Error('not in a room');
      // The answer arrives as an sfu.answer event, applied by _roomStep on the same
      // queue: wait for it outside the queued step.
      const answered = new Promise((res, rej) => { rm.onAnswer = { res, rej }; });
      const offered = rm.queue.then(async () => {
        rm.pc.restartIce();
        await rm.pc.setLocalDescription(await rm.pc.createOffer({ iceRestart: true }));
        await this.request({ type: 'room.sdp', sdp_type: 'offer', sdp: rm.pc.localDescription.sdp });
      });
      rm.queue = offered.catch(() => {});
      await offered;
      await answered;
      return this.iceUfrag();
    }
    iceUfrag() {
      const d = this.room && this.room.pc && this.room.pc.remoteDescription;
      return d ? (/a=ice-ufrag:(\S+)/.exec(d.sdp) || [])[1] : null;
    }
    async leave() {
      if (!this.room) return;
      const rm = this.room;
      this.room = null;
      await this.request({ type: 'room.leave' }).catch(() => {});
      rm.pc.close();
    }
    setQuality(quality, publisher) {
      const f = { type: 'room.quality', quality };
      if (publisher) f.publisher = publisher;
      return this.request(f);
    }
    mute(kind, muted) { return this.request({ type: 'room.mute', kind, muted }); }
    roomEvents() {
      return this.room ? this.room.events.map((e) => e.type + (e.code ? ':' + e.code : '') + (e.participant ? ':' + e.participant : '')) : [];
    }
    // Per remote participant: { frames, width, audio } from the tracks the SFU described.
    // The selected ICE path of the room's peer connection (see selectedPath).
    async roomPath() {
      return this.room && this.room.pc ? selectedPath(await this.room.pc.getStats()) : selectedPath(new Map());
    }
    async roomStats() {
      const out = {};
      if (!this.room) return out;
      const rm = this.room;
      const st = await rm.pc.getStats();
      st.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const t = rm.tracks[s.mid];
        if (!t) return;
        const o = out[t.participant] || (out[t.participant] = { frames: 0, width: 0, audio: 0 });
        if (s.kind === 'video') { o.frames += s.framesDecoded || 0; o.width = Math.max(o.width, s.frameWidth || 0); } else o.audio += s.packetsReceived || 0;
      });
      return out;
    }
  }

  window.Parley = Parley;
  window.parley = new Parley();
})();
