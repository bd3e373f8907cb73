// The sfu demo page: join a room, publish camera and microphone with mediasoup-client, see and
// hear everyone else in the room. Signaling is the demo server's WebSocket (see
// examples/src/demo/mod.rs for the protocol).
//
// URL parameters: room=NAME, peer=ID (default: random), forceTcp=1 (ask the server for ICE-TCP
// candidates only), autojoin=1 (join on load), nomedia=1 (join without publishing),
// simulcast=1 (send the camera in three encodings instead of one).
//
// For tests the page exposes window.sfuDemo: { join(), leave(), stats(), state, log }.

import { Device } from 'mediasoup-client';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const state = {
  room: params.get('room') || 'demo',
  peerId: params.get('peer') || `peer-${Math.random().toString(36).slice(2, 8)}`,
  forceTcp: params.get('forceTcp') === '1',
  publish: params.get('nomedia') !== '1',
  simulcast: params.get('simulcast') === '1',
  joined: false,
  sendState: 'new',
  recvState: 'new',
  serverTuples: {},
  // Peer id -> how many times the server named it the room's active speaker.
  activeSpeakers: {},
  produced: [],
  errors: [],
};
const log = [];

let ws = null;
let device = null;
let sendTransport = null;
let recvTransport = null;
let localStream = null;
let nextId = 1;
const pending = new Map(); // request id -> {resolve, reject, method}
const consumers = new Map(); // consumer id -> {consumer, peerId, kind, last: {bytes, at}, bitrate}
const producers = new Map(); // producer id -> Producer

function note(text) {
  const line = `${new Date().toISOString().slice(11, 23)} ${text}`;
  log.push(line);
  if (log.length > 500) log.shift();
  console.log(`[sfu-demo] ${text}`);
  const el = $('log');
  if (el) {
    el.textContent = log.slice(-30).join('\n');
  }
}

function fail(where, err) {
  const text = `${where}: ${err && err.message ? err.message : err}`;
  state.errors.push(text);
  note(`ERROR ${text}`);
  setStatus(`error: ${text}`);
}

function setStatus(text) {
  $('status').textContent = text;
}

// ---- signaling ----------------------------------------------------------------------------

function openSocket() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/ws?room=${encodeURIComponent(state.room)}&peer=${encodeURIComponent(state.peerId)}`;
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error(`cannot open ${url}`));
    socket.onclose = (ev) => {
      note(`signaling closed (${ev.code} ${ev.reason})`);
      for (const { reject: r, method } of pending.values()) r(new Error(`${method}: signaling closed`));
      pending.clear();
      if (state.joined) {
        fail('signaling', `connection closed (${ev.code} ${ev.reason})`);
        cleanup();
      }
    };
    socket.onmessage = (ev) => onMessage(ev.data);
  });
}

function request(method, data = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, method });
    ws.send(JSON.stringify({ id, method, data }));
  });
}

function onMessage(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    fail('signaling', `bad message from server: ${text}`);
    return;
  }
  if (msg.notification) {
    onNotification(msg.method, msg.data || {}).catch((e) => fail(msg.method, e));
    return;
  }
  const p = pending.get(msg.id);
  if (!p) return;
  pending.delete(msg.id);
  if (msg.ok) p.resolve(msg.data);
  else p.reject(new Error(`${p.method}: ${msg.error}`));
}

async function onNotification(method, data) {
  switch (method) {
    case 'newProducer':
      note(`new producer ${data.producerId} (${data.kind}) of ${data.peerId}`);
      await consume(data.producerId);
      break;
    case 'producerClosed':
    case 'consumerClosed':
      for (const [id, c] of consumers) {
        if (id === data.consumerId || c.consumer.producerId === data.producerId) removeConsumer(id);
      }
      break;
    case 'consumerPaused':
    case 'consumerResumed':
      note(`${method} ${data.consumerId}`);
      break;
    case 'peerJoined':
      note(`peer ${data.peerId} joined`);
      tile(data.peerId);
      break;
    case 'peerLeft':
      note(`peer ${data.peerId} left`);
      removeTile(data.peerId);
      break;
    case 'transportTuple':
      state.serverTuples[data.transportId] = data;
      note(`server path for ${data.transportId}: ${data.protocol} ${data.remote} -> ${data.local}`);
      break;
    case 'activeSpeaker':
      // The loudest microphone of the room (or none: silence), from the server's audio levels.
      if (data.peerId) {
        state.activeSpeakers[data.peerId] = (state.activeSpeakers[data.peerId] || 0) + 1;
        state.loudest = Math.max(state.loudest ?? -127, data.volume);
      }
      for (const t of document.querySelectorAll('figure.peer')) {
        t.classList.toggle('speaking', t.dataset.peer === data.peerId);
      }
      break;
    case 'transportState':
      note(`server transport ${data.transportId}: ${data.ice ? `ICE ${data.ice}` : `DTLS ${data.dtls}`}`);
      break;
    case 'error':
      fail('server', data.error);
      break;
    default:
      note(`notification ${method}`);
  }
}

// ---- mediasoup-client --------------------------------------------------------------------

async function createTransport(direction) {
  const info = await request('createWebRtcTransport', { direction, forceTcp: state.forceTcp });
  const transport = direction === 'send' ? device.createSendTransport(info) : device.createRecvTransport(info);
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
      .then(callback)
      .catch(errback);
  });
  transport.on('connectionstatechange', (s) => {
    state[`${direction}State`] = s;
    note(`${direction} transport: ${s}`);
    renderStates();
  });
  if (direction === 'send') {
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      state.produced.push({ kind, rtpParameters });
      request('produce', { transportId: transport.id, kind, rtpParameters, appData })
        .then(({ id }) => callback({ id }))
        .catch(errback);
    });
  }
  return transport;
}

async function consume(producerId) {
  const params = await request('consume', { producerId, transportId: recvTransport.id });
  const consumer = await recvTransport.consume({
    id: params.id,
    producerId: params.producerId,
    kind: params.kind,
    rtpParameters: params.rtpParameters,
  });
  consumers.set(consumer.id, { consumer, peerId: params.peerId, kind: consumer.kind, last: null, bitrate: 0 });
  const t = tile(params.peerId);
  const media = t.querySelector(consumer.kind === 'video' ? 'video' : 'audio');
  const stream = media.srcObject || new MediaStream();
  stream.addTrack(consumer.track);
  media.srcObject = stream;
  media.play().catch(() => {});
  await request('resumeConsumer', { consumerId: consumer.id });
  note(`consuming ${consumer.kind} of ${params.peerId}`);
}

function removeConsumer(id) {
  const c = consumers.get(id);
  if (!c) return;
  consumers.delete(id);
  c.consumer.close();
  note(`consumer ${id} (${c.kind} of ${c.peerId}) closed`);
}

async function join() {
  if (state.joined) return;
  state.errors = [];
  setStatus('joining…');
  try {
    ws = await openSocket();
    const routerRtpCapabilities = await request('getRouterRtpCapabilities');
    device = typeof Device.factory === 'function' ? await Device.factory() : new Device();
    await device.load({ routerRtpCapabilities });
    note(`device loaded (${device.handlerName})`);
    sendTransport = await createTransport('send');
    recvTransport = await createTransport('recv');
    const joined = await request('join', { rtpCapabilities: device.rtpCapabilities });
    state.joined = true;
    $('join').disabled = true;
    $('leave').disabled = false;
    setStatus(`in room ${state.room} as ${state.peerId}`);
    for (const p of joined.peers) tile(p);
    for (const p of joined.producers) await consume(p.producerId);
    if (state.publish) await publish();
  } catch (e) {
    fail('join', e);
  }
}

async function publish() {
  localStream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
  });
  $('local').srcObject = localStream;
  for (const track of localStream.getTracks()) {
    const options = { track };
    if (track.kind === 'video') {
      options.encodings = state.simulcast
        ? [
            { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
            { scaleResolutionDownBy: 2, maxBitrate: 400_000 },
            { scaleResolutionDownBy: 1, maxBitrate: 900_000 },
          ]
        : [{ maxBitrate: 800_000 }];
      options.codecOptions = { videoGoogleStartBitrate: 600 };
    }
    const producer = await sendTransport.produce(options);
    producers.set(producer.id, producer);
    note(`producing ${track.kind} (${producer.id})`);
  }
}

function cleanup() {
  for (const id of [...consumers.keys()]) removeConsumer(id);
  for (const p of producers.values()) p.close();
  producers.clear();
  if (sendTransport) sendTransport.close();
  if (recvTransport) recvTransport.close();
  sendTransport = recvTransport = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  $('local').srcObject = null;
  $('peers').replaceChildren();
  state.joined = false;
  state.sendState = state.recvState = 'closed';
  $('join').disabled = false;
  $('leave').disabled = true;
  renderStates();
}

function leave() {
  const socket = ws;
  ws = null;
  state.joined = false;
  if (socket) socket.close();
  cleanup();
  setStatus('left the room');
}

// ---- page --------------------------------------------------------------------------------

function tile(peerId) {
  let t = document.querySelector(`[data-peer="${CSS.escape(peerId)}"]`);
  if (t) return t;
  t = document.createElement('figure');
  t.className = 'peer';
  t.dataset.peer = peerId;
  t.innerHTML = '<video autoplay playsinline muted></video><audio autoplay></audio><figcaption></figcaption>';
  t.querySelector('figcaption').textContent = peerId;
  $('peers').append(t);
  return t;
}

function removeTile(peerId) {
  const t = document.querySelector(`[data-peer="${CSS.escape(peerId)}"]`);
  if (t) t.remove();
}

function renderStates() {
  $('states').textContent = `send: ${state.sendState} · recv: ${state.recvState}${state.forceTcp ? ' · ICE over TCP' : ''}`;
}

function inbound(report) {
  for (const s of report.values()) {
    if (s.type === 'inbound-rtp') return s;
  }
  return null;
}

async function transportSummary(transport) {
  if (!transport) return null;
  const report = await transport.getStats();
  let t = null;
  for (const s of report.values()) if (s.type === 'transport') t = s;
  if (!t) return null;
  const pair = t.selectedCandidatePairId ? report.get(t.selectedCandidatePairId) : null;
  const local = pair ? report.get(pair.localCandidateId) : null;
  const remote = pair ? report.get(pair.remoteCandidateId) : null;
  return {
    dtlsState: t.dtlsState,
    iceState: t.iceState,
    dtlsRole: t.dtlsRole,
    tlsVersion: t.tlsVersion,
    dtlsCipher: t.dtlsCipher,
    srtpCipher: t.srtpCipher,
    bytesSent: t.bytesSent,
    bytesReceived: t.bytesReceived,
    localProtocol: local ? local.protocol : null,
    localCandidateType: local ? local.candidateType : null,
    remoteProtocol: remote ? remote.protocol : null,
    remoteAddress: remote ? `${remote.address}:${remote.port}` : null,
  };
}

/** Everything a test wants to know, from RTCPeerConnection.getStats(). */
async function stats() {
  const remote = [];
  for (const [id, c] of consumers) {
    const s = inbound(await c.consumer.getStats());
    const now = performance.now();
    const bytes = s ? s.bytesReceived || 0 : 0;
    // Chromium caches getStats() briefly: measure over at least 900 ms.
    if (!c.last) c.last = { bytes, at: now };
    else if (now - c.last.at >= 900) {
      c.bitrate = Math.round(((bytes - c.last.bytes) * 8000) / (now - c.last.at));
      c.last = { bytes, at: now };
    }
    remote.push({
      consumerId: id,
      peerId: c.peerId,
      kind: c.kind,
      paused: c.consumer.paused,
      packetsReceived: s ? s.packetsReceived || 0 : 0,
      packetsLost: s ? s.packetsLost || 0 : 0,
      bytesReceived: bytes,
      framesDecoded: s ? s.framesDecoded || 0 : 0,
      frameWidth: s ? s.frameWidth || 0 : 0,
      bitrate: c.bitrate,
    });
  }
  return {
    room: state.room,
    peerId: state.peerId,
    joined: state.joined,
    forceTcp: state.forceTcp,
    sendState: state.sendState,
    recvState: state.recvState,
    send: await transportSummary(sendTransport),
    recv: await transportSummary(recvTransport),
    serverTuples: state.serverTuples,
    activeSpeakers: state.activeSpeakers,
    loudest: state.loudest,
    produced: state.produced,
    remote,
    errors: state.errors,
  };
}

/** RTCTransportStats.tlsVersion is the record version in hex (FEFD is DTLS 1.2). */
function dtlsVersion(hex) {
  return { FEFF: '1.0', FEFD: '1.2', FEFC: '1.3' }[String(hex).toUpperCase()] || hex;
}

async function refresh() {
  try {
    const s = await stats();
    for (const t of document.querySelectorAll('figure.peer')) {
      const mine = s.remote.filter((r) => r.peerId === t.dataset.peer);
      const text = mine
        .map((r) => `${r.kind} ${(r.bitrate / 1000).toFixed(0)} kbit/s${r.kind === 'video' ? ` ${r.frameWidth}px` : ''}`)
        .join(' · ');
      t.querySelector('figcaption').textContent = `${t.dataset.peer}${text ? ` — ${text}` : ''}`;
    }
    const tr = s.recv || s.send;
    $('dtls').textContent = tr && tr.tlsVersion
      ? `DTLS ${dtlsVersion(tr.tlsVersion)} (browser is DTLS ${tr.dtlsRole}) · ${tr.srtpCipher} · ICE over ${tr.localProtocol}`
      : '';
  } catch (e) {
    // The transports may close under us while leaving.
  }
}

window.sfuDemo = { join, leave, stats, state, log };

window.addEventListener('DOMContentLoaded', () => {
  $('room').value = state.room;
  $('tcp').checked = state.forceTcp;
  $('join').onclick = () => {
    state.room = $('room').value.trim() || 'demo';
    state.forceTcp = $('tcp').checked;
    const url = new URL(location.href);
    url.searchParams.set('room', state.room);
    history.replaceState(null, '', url);
    join();
  };
  $('leave').onclick = leave;
  renderStates();
  setInterval(refresh, 1000);
  if (params.get('autojoin') === '1') join();
});
