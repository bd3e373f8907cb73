// The sfu demo page: join a room, publish camera and microphone with mediasoup-client, see and
// hear everyone else in the room, and chat with it over a data channel (produceData /
// consumeData). Signaling is the demo server's WebSocket (see examples/src/demo/mod.rs for the
// protocol).
//
// URL parameters: room=NAME, peer=ID (default: random), forceTcp=1 (ask the server for ICE-TCP
// candidates only), autojoin=1 (join on load), nomedia=1 (join without publishing),
// simulcast=1 (send the camera in three encodings instead of one), svc=1 (send the camera in VP9
// with three spatial and three temporal layers, scalability mode L3T3_KEY), maxBitrate=KBPS (the video
// encoding's limit without simulcast, default 800), sfuDtlsRole=client (ask the server to be the
// DTLS client of this page's transports: the browser is then the DTLS server and picks the SRTP
// profile), testSource=N (N >= 1: instead of the camera and microphone, publish a test pattern
// and a tone that identify this page; see "test source" below), testNoise=1 (the test pattern
// carries a band of random pixels along its top, so the encoder spends its whole bitrate).
//
// For tests the page exposes window.sfuDemo: { join(), leave(), stats(), setPreferredLayer(n),
// setMaxIncomingBitrate(bps), sendChat(text), state, log }.

import { Device } from 'mediasoup-client';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const state = {
  room: params.get('room') || 'demo',
  peerId: params.get('peer') || `peer-${Math.random().toString(36).slice(2, 8)}`,
  forceTcp: params.get('forceTcp') === '1',
  publish: params.get('nomedia') !== '1',
  simulcast: params.get('simulcast') === '1',
  svc: params.get('svc') === '1',
  maxBitrate: Number(params.get('maxBitrate')) > 0 ? Number(params.get('maxBitrate')) : 800,
  // The DTLS role the server's transports take (null: the server decides).
  sfuDtlsRole: params.get('sfuDtlsRole'),
  // The test pattern carries a band of noise (see "test source").
  testNoise: params.get('testNoise') === '1',
  // The test source's identity (null: the real camera and microphone).
  test: null, // set below, once the palette is defined
  // What the server said on join: the worker and router the room lives on.
  placement: null,
  joined: false,
  sendState: 'new',
  recvState: 'new',
  serverTuples: {},
  // Peer id -> how many times the server named it the room's active speaker.
  activeSpeakers: {},
  produced: [],
  // Chat messages shown: {from, text, mine, at (Date.now() when shown)}.
  chat: [],
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
const consumers = new Map(); // consumer id -> {consumer, peerId, kind, last: {bytes, at}, bitrate, probe}
const producers = new Map(); // producer id -> Producer
const dataConsumers = new Map(); // data consumer id -> {dataConsumer, peerId, dataProducerId}
const consumingData = new Set(); // data producer ids consumed or being consumed
let chatProducer = null; // the DataProducer this page chats on
const CHAT_LABEL = 'chat';
const CHAT_KEEP = 200; // messages kept in the list
const CHAT_MAX_CHARS = 2000; // longest message shown (longer ones are cut)

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
    case 'newDataProducer':
      note(`new data producer ${data.dataProducerId} ("${data.label}") of ${data.peerId}`);
      await consumeData(data.dataProducerId);
      break;
    case 'dataProducerClosed':
    case 'dataConsumerClosed':
      for (const [id, c] of dataConsumers) {
        if (id === data.dataConsumerId || c.dataProducerId === data.dataProducerId) removeDataConsumer(id);
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
      note(`server transport ${data.transportId}: ${data.ice ? `ICE ${data.ice}` : data.dtls ? `DTLS ${data.dtls}` : `SCTP ${data.sctp}`}`);
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
  const data = { direction, forceTcp: state.forceTcp };
  if (state.sfuDtlsRole) data.dtlsRole = state.sfuDtlsRole;
  const info = await request('createWebRtcTransport', data);
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
    transport.on('producedata', ({ sctpStreamParameters, label, protocol }, callback, errback) => {
      request('produceData', { transportId: transport.id, sctpStreamParameters, label, protocol })
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
  if (state.test) consumers.get(consumer.id).probe = consumer.kind === 'video' ? videoProbe(media) : audioProbe(consumer.track);
  await request('resumeConsumer', { consumerId: consumer.id });
  note(`consuming ${consumer.kind} of ${params.peerId}`);
}

async function consumeData(dataProducerId) {
  if (consumingData.has(dataProducerId)) return;
  consumingData.add(dataProducerId);
  let params;
  let dataConsumer;
  try {
    params = await request('consumeData', { dataProducerId, transportId: recvTransport.id });
    dataConsumer = await recvTransport.consumeData({
      id: params.id,
      dataProducerId: params.dataProducerId,
      sctpStreamParameters: params.sctpStreamParameters,
      label: params.label,
      protocol: params.protocol,
    });
  } catch (e) {
    consumingData.delete(dataProducerId);
    throw e;
  }
  dataConsumers.set(dataConsumer.id, { dataConsumer, peerId: params.peerId, dataProducerId });
  dataConsumer.on('message', (message) => {
    if (dataConsumer.label === CHAT_LABEL) addChat(params.peerId, typeof message === 'string' ? message : '(binary message)');
  });
  dataConsumer.on('open', () => note(`data channel "${dataConsumer.label}" of ${params.peerId} open`));
  note(`consuming data "${dataConsumer.label}" of ${params.peerId} (stream ${params.sctpStreamParameters.streamId})`);
}

function removeDataConsumer(id) {
  const c = dataConsumers.get(id);
  if (!c) return;
  dataConsumers.delete(id);
  consumingData.delete(c.dataProducerId);
  c.dataConsumer.close();
  note(`data consumer ${id} of ${c.peerId} closed`);
}

function removeConsumer(id) {
  const c = consumers.get(id);
  if (!c) return;
  consumers.delete(id);
  if (c.probe) c.probe.stop();
  c.consumer.close();
  note(`consumer ${id} (${c.kind} of ${c.peerId}) closed`);
}

// With sfuDtlsRole=client the server announces the DTLS role "client" and mediasoup-client
// reports the role "server" for this page. On a send transport Chromium answers the server's
// SDP accordingly, but on a receive transport Chromium is the answerer to an "actpass" offer and
// makes itself the DTLS client (a=setup:active), which mediasoup-client leaves as it is: the page
// makes that answer passive, the role it reported.
if (state.sfuDtlsRole === 'client') {
  const setLocalDescription = RTCPeerConnection.prototype.setLocalDescription;
  RTCPeerConnection.prototype.setLocalDescription = function (description, ...rest) {
    if (description && description.type === 'answer' && description.sdp) {
      description = { type: 'answer', sdp: description.sdp.replace(/a=setup:active/g, 'a=setup:passive') };
    }
    return setLocalDescription.call(this, description, ...rest);
  };
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
    state.placement = { worker: joined.worker, router: joined.router };
    state.joined = true;
    $('join').disabled = true;
    $('leave').disabled = false;
    setStatus(`in room ${state.room} as ${state.peerId}`);
    for (const p of joined.peers) tile(p);
    for (const d of joined.dataProducers || []) await consumeData(d.dataProducerId);
    for (const p of joined.producers) await consume(p.producerId);
    await startChat();
    if (state.publish) await publish();
  } catch (e) {
    fail('join', e);
  }
}

async function publish() {
  localStream = state.test
    ? testStream(state.test)
    : await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
      });
  $('local').srcObject = localStream;
  for (const track of localStream.getTracks()) {
    const options = { track };
    if (track.kind === 'video') {
      // The test pattern needs little: lower limits let Chromium turn on the top layer as soon
      // as its bandwidth estimate passes about 400 kbit/s, instead of about 700.
      const kbps = state.test ? [80, 160, 400] : [150, 400, 900];
      options.encodings = state.simulcast
        ? [
            { scaleResolutionDownBy: 4, maxBitrate: kbps[0] * 1000 },
            { scaleResolutionDownBy: 2, maxBitrate: kbps[1] * 1000 },
            { scaleResolutionDownBy: 1, maxBitrate: kbps[2] * 1000 },
          ]
        : [{ maxBitrate: state.maxBitrate * 1000 }];
      if (state.svc) {
        // One VP9 stream carrying three spatial and three temporal layers.
        options.codec = device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp9');
        if (!options.codec) throw new Error('the room does not offer VP9');
        options.encodings = [{ scalabilityMode: 'L3T3_KEY', maxBitrate: (state.test ? 600 : 1200) * 1000 }];
      }
      options.codecOptions = { videoGoogleStartBitrate: 600 };
    }
    const producer = await sendTransport.produce(options);
    producers.set(producer.id, producer);
    note(`producing ${track.kind} (${producer.id})`);
  }
}

function cleanup() {
  for (const id of [...consumers.keys()]) removeConsumer(id);
  for (const id of [...dataConsumers.keys()]) removeDataConsumer(id);
  consumingData.clear();
  if (chatProducer) chatProducer.close();
  chatProducer = null;
  setChatEnabled(false);
  for (const p of producers.values()) p.close();
  producers.clear();
  if (sendTransport) sendTransport.close();
  if (recvTransport) recvTransport.close();
  sendTransport = recvTransport = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  if (testSourceTimer) clearInterval(testSourceTimer);
  testSourceTimer = null;
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

// ---- chat ----------------------------------------------------------------------------------
//
// Each page sends its messages on one ordered, reliable data channel (a DataProducer labelled
// "chat" on the send transport) and receives those of every other page of the room on its
// receive transport (one DataConsumer each), as text.

async function startChat() {
  chatProducer = await sendTransport.produceData({ ordered: true, label: CHAT_LABEL });
  chatProducer.on('open', () => {
    note(`chat channel open (stream ${chatProducer.sctpStreamParameters.streamId})`);
    setChatEnabled(true);
  });
  chatProducer.on('close', () => setChatEnabled(false));
  chatProducer.on('transportclose', () => setChatEnabled(false));
  chatProducer.on('error', (e) => note(`chat channel error: ${e && e.message ? e.message : e}`));
  if (chatProducer.readyState === 'open') setChatEnabled(true);
}

function setChatEnabled(on) {
  $('chat-input').disabled = !on;
  $('chat-send').disabled = !on;
}

/** Sends a chat message to the room; false when there is nothing to send or no open channel. */
function sendChat(text) {
  const message = String(text).trim();
  if (!message || !chatProducer || chatProducer.readyState !== 'open') return false;
  chatProducer.send(message);
  addChat(state.peerId, message, true);
  return true;
}

function addChat(from, text, mine = false) {
  const shown = text.length > CHAT_MAX_CHARS ? `${text.slice(0, CHAT_MAX_CHARS)}…` : text;
  state.chat.push({ from, text: shown, mine, at: Date.now() });
  if (state.chat.length > CHAT_KEEP) state.chat.shift();
  const list = $('chat-log');
  const item = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'from';
  who.textContent = mine ? `${from} (you)` : from;
  item.append(who, `: ${shown}`);
  list.append(item);
  while (list.children.length > CHAT_KEEP) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

// ---- test source ---------------------------------------------------------------------------
//
// With testSource=N the page publishes, instead of the camera and microphone, a 640x360 canvas
// filled with colour N of PALETTE (a strip along the bottom carries an 8-bit frame counter as
// black and white cells) and a sine tone of 300 + 200 N Hz that is loud (about -10 dBFS) for
// 1.5 s and quiet (about -34 dBFS) for 1.5 s, odd N and even N taking turns, so that in a room of
// an odd and an even page each one is the loudest in turn. With testNoise=1 a band of random
// grey pixels, new in every frame, runs along the top (above the area probed for the colour), so
// each encoding costs about its maximum bitrate. Every received track is then probed:
// video frames are drawn to a canvas and their pixels read back (colour -> sender identity, strip
// -> frame counter), audio goes through a WebAudio AnalyserNode (level and dominant frequency).

const PALETTE = [
  [230, 40, 40],
  [40, 200, 60],
  [50, 80, 235],
  [235, 200, 30],
  [200, 50, 220],
  [30, 210, 210],
];
const TEST_WIDTH = 640;
const TEST_HEIGHT = 360;
const COUNTER_CELLS = 8;
// The height of the noise band (testNoise=1): above the first row the colour probe reads (y = 50).
const NOISE_HEIGHT = 40;
const PULSE_MS = 1500;

function testIdentity(n) {
  if (!Number.isInteger(n) || n < 1) return null;
  return { index: n, color: PALETTE[(n - 1) % PALETTE.length], freq: 300 + 200 * n };
}

/** The identity whose colour is nearest to rgb, when near enough, else 0. */
function classifyColor(rgb) {
  let best = 0;
  let bestDistance = 70;
  PALETTE.forEach((c, i) => {
    const d = Math.hypot(c[0] - rgb[0], c[1] - rgb[1], c[2] - rgb[2]);
    if (d < bestDistance) {
      best = i + 1;
      bestDistance = d;
    }
  });
  return best;
}

let audioContext = null;
let testSourceTimer = null;
state.test = testIdentity(Number(params.get('testSource') || 0));

function sharedAudioContext() {
  if (!audioContext) audioContext = new AudioContext({ sampleRate: 48_000 });
  if (audioContext.state === 'suspended') audioContext.resume().catch(() => {});
  return audioContext;
}

function testStream(id) {
  const canvas = document.createElement('canvas');
  canvas.width = TEST_WIDTH;
  canvas.height = TEST_HEIGHT;
  const g = canvas.getContext('2d');
  const strip = TEST_HEIGHT / 6;
  const noise = state.testNoise ? g.createImageData(TEST_WIDTH, NOISE_HEIGHT) : null;
  let frame = 0;
  const draw = () => {
    g.fillStyle = `rgb(${id.color.join(',')})`;
    g.fillRect(0, 0, TEST_WIDTH, TEST_HEIGHT - strip);
    if (noise) {
      const d = noise.data;
      for (let o = 0; o < d.length; o += 4) {
        const v = (Math.random() * 256) | 0;
        d[o] = v;
        d[o + 1] = v;
        d[o + 2] = v;
        d[o + 3] = 255;
      }
      g.putImageData(noise, 0, 0);
    }
    const cell = TEST_WIDTH / COUNTER_CELLS;
    for (let i = 0; i < COUNTER_CELLS; i++) {
      g.fillStyle = (frame >> (COUNTER_CELLS - 1 - i)) & 1 ? '#fff' : '#000';
      g.fillRect(i * cell, TEST_HEIGHT - strip, cell, strip);
    }
    frame = (frame + 1) & 0xff;
  };
  draw();
  const video = canvas.captureStream(30).getVideoTracks()[0];

  const ctx = sharedAudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = id.freq;
  const gain = ctx.createGain();
  gain.gain.value = 0.02;
  const out = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(out);
  osc.start();
  const pulse = () => {
    const loud = Math.floor(Date.now() / PULSE_MS) % 2 === id.index % 2;
    gain.gain.setTargetAtTime(loud ? 0.3 : 0.02, ctx.currentTime, 0.01);
  };
  pulse();
  let ticks = 0;
  testSourceTimer = setInterval(() => {
    draw();
    if (++ticks % 3 === 0) pulse();
  }, 33);
  note(`test source ${id.index}: colour rgb(${id.color.join(',')}), tone ${id.freq} Hz`);
  return new MediaStream([out.stream.getAudioTracks()[0], video]);
}

/** Reads a received video element's frames back every 250 ms (scaled down to 64x36). */
function videoProbe(video) {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 36;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  const r = { samples: 0, identities: {}, counters: new Set(), lastCounter: null, lastColor: null, width: 0, height: 0 };
  const timer = setInterval(() => {
    if (!video.videoWidth || !video.videoHeight || video.readyState < 2) return;
    const w = canvas.width;
    const h = canvas.height;
    g.drawImage(video, 0, 0, w, h);
    const px = g.getImageData(0, 0, w, h).data;
    const at = (x, y) => {
      const o = (Math.floor(y) * w + Math.floor(x)) * 4;
      return [px[o], px[o + 1], px[o + 2]];
    };
    // The colour: the mean of a 5x5 grid over the middle of the picture (above the strip).
    const sum = [0, 0, 0];
    for (let i = 1; i <= 5; i++) {
      for (let j = 1; j <= 5; j++) {
        const c = at((w * i) / 6, ((h * 5) / 6) * (j / 6));
        sum[0] += c[0];
        sum[1] += c[1];
        sum[2] += c[2];
      }
    }
    const color = sum.map((v) => Math.round(v / 25));
    const who = classifyColor(color);
    let counter = 0;
    for (let i = 0; i < COUNTER_CELLS; i++) {
      const c = at(((i + 0.5) * w) / COUNTER_CELLS, h - h / 12);
      counter = (counter << 1) | (c[0] + c[1] + c[2] > 384 ? 1 : 0);
    }
    r.samples += 1;
    r.identities[who] = (r.identities[who] || 0) + 1;
    r.counters.add(counter);
    r.lastCounter = counter;
    r.lastColor = color;
    r.width = video.videoWidth;
    r.height = video.videoHeight;
  }, 250);
  return {
    stop: () => clearInterval(timer),
    report: () => ({ ...r, counters: r.counters.size }),
  };
}

/** Listens to a received audio track through an AnalyserNode every 200 ms. */
function audioProbe(track) {
  const ctx = sharedAudioContext();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const time = new Float32Array(analyser.fftSize);
  const freq = new Float32Array(analyser.frequencyBinCount);
  const r = { samples: 0, loud: 0, maxDbfs: -Infinity, frequencies: {} };
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(time);
    let energy = 0;
    for (const v of time) energy += v * v;
    const dbfs = 10 * Math.log10(energy / time.length + 1e-12);
    r.samples += 1;
    r.maxDbfs = Math.max(r.maxDbfs, Math.round(dbfs * 10) / 10);
    if (dbfs < -50) return;
    r.loud += 1;
    analyser.getFloatFrequencyData(freq);
    let peak = 0;
    for (let i = 1; i < freq.length; i++) if (freq[i] > freq[peak]) peak = i;
    const hz = Math.round((peak * ctx.sampleRate) / analyser.fftSize / 10) * 10;
    r.frequencies[hz] = (r.frequencies[hz] || 0) + 1;
  }, 200);
  return {
    stop: () => {
      clearInterval(timer);
      source.disconnect();
    },
    report: () => {
      let dominant = null;
      for (const [hz, n] of Object.entries(r.frequencies)) {
        if (dominant === null || n > r.frequencies[dominant]) dominant = hz;
      }
      return { ...r, dominantFreq: dominant === null ? null : Number(dominant), contextState: ctx.state };
    },
  };
}

/** Asks the server to forward simulcast layer `layer` (0: lowest) of every received video. */
async function setPreferredLayer(layer) {
  for (const [id, c] of consumers) {
    if (c.kind === 'video') await request('setConsumerPreferredLayers', { consumerId: id, spatialLayer: layer });
  }
}

/**
 * Asks the server to cap what it sends to this page (its receive transport) at `bitrate` bits per
 * second; 0 lifts the cap.
 */
async function setMaxIncomingBitrate(bitrate) {
  if (!recvTransport) throw new Error('not joined');
  await request('setMaxOutgoingBitrate', { transportId: recvTransport.id, bitrate });
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
    // The send-side bandwidth estimate (transport-wide-cc feedback drives it) and the RTT.
    availableOutgoingBitrate: pair ? pair.availableOutgoingBitrate : undefined,
    currentRoundTripTime: pair ? pair.currentRoundTripTime : undefined,
    bytesSent: t.bytesSent,
    bytesReceived: t.bytesReceived,
    packetsSent: t.packetsSent,
    packetsReceived: t.packetsReceived,
    localProtocol: local ? local.protocol : null,
    localCandidateType: local ? local.candidateType : null,
    remoteProtocol: remote ? remote.protocol : null,
    remoteAddress: remote ? `${remote.address}:${remote.port}` : null,
  };
}

/** Every inbound RTP stream of a transport's RTCPeerConnection, asked for or not. */
async function inboundStreams(transport) {
  if (!transport) return [];
  const out = [];
  for (const s of (await transport.getStats()).values()) {
    if (s.type !== 'inbound-rtp') continue;
    out.push({
      ssrc: s.ssrc,
      kind: s.kind,
      mid: s.mid,
      packetsReceived: s.packetsReceived || 0,
      packetsLost: s.packetsLost || 0,
      bytesReceived: s.bytesReceived || 0,
      headerBytesReceived: s.headerBytesReceived || 0,
      framesDecoded: s.framesDecoded || 0,
      frameWidth: s.frameWidth || 0,
    });
  }
  return out;
}

/**
 * What the RTCP of the other end told a transport's connection: remote-outbound-rtp (from the
 * server's sender reports about the streams this connection receives) and remote-inbound-rtp
 * (from its receiver reports about the streams this connection sends).
 */
async function rtcpStreams(transport) {
  if (!transport) return [];
  const out = [];
  for (const s of (await transport.getStats()).values()) {
    if (s.type === 'remote-outbound-rtp') {
      out.push({
        type: s.type,
        kind: s.kind,
        ssrc: s.ssrc,
        packetsSent: s.packetsSent,
        reportsSent: s.reportsSent,
        remoteTimestamp: s.remoteTimestamp,
      });
    } else if (s.type === 'remote-inbound-rtp') {
      out.push({
        type: s.type,
        kind: s.kind,
        ssrc: s.ssrc,
        packetsLost: s.packetsLost,
        fractionLost: s.fractionLost,
        jitter: s.jitter,
        roundTripTime: s.roundTripTime,
        roundTripTimeMeasurements: s.roundTripTimeMeasurements,
      });
    }
  }
  return out;
}

/** Every outbound RTP stream (simulcast: one per encoding) of a transport's connection. */
async function outboundStreams(transport) {
  if (!transport) return [];
  const out = [];
  for (const s of (await transport.getStats()).values()) {
    if (s.type !== 'outbound-rtp') continue;
    out.push({
      kind: s.kind,
      rid: s.rid,
      ssrc: s.ssrc,
      active: s.active,
      packetsSent: s.packetsSent || 0,
      frameWidth: s.frameWidth || 0,
      framesEncoded: s.framesEncoded || 0,
      targetBitrate: s.targetBitrate,
      qualityLimitationReason: s.qualityLimitationReason,
    });
  }
  return out;
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
      frameHeight: s ? s.frameHeight || 0 : 0,
      bitrate: c.bitrate,
      // The SSRC the server said it sends (the consumer's rtpParameters) and the one received.
      ssrc: c.consumer.rtpParameters.encodings[0].ssrc,
      inboundSsrc: s ? s.ssrc : null,
      probe: c.probe ? c.probe.report() : null,
      server: await request('getConsumerStats', { consumerId: id }).catch((e) => ({ error: e.message })),
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
    recvInbound: await inboundStreams(recvTransport),
    sendOutbound: await outboundStreams(sendTransport),
    recvRtcp: await rtcpStreams(recvTransport),
    sendRtcp: await rtcpStreams(sendTransport),
    recvServer: recvTransport
      ? await request('getTransportStats', { transportId: recvTransport.id }).catch((e) => ({ error: e.message }))
      : null,
    test: state.test,
    placement: state.placement,
    serverTuples: state.serverTuples,
    activeSpeakers: state.activeSpeakers,
    loudest: state.loudest,
    produced: state.produced,
    chat: {
      producer: chatProducer ? chatProducer.readyState : null,
      consumers: [...dataConsumers.values()].map((c) => ({
        peerId: c.peerId,
        label: c.dataConsumer.label,
        readyState: c.dataConsumer.readyState,
      })),
      messages: state.chat,
    },
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

window.sfuDemo = { join, leave, stats, setPreferredLayer, setMaxIncomingBitrate, sendChat, state, log };

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
  $('chat-form').onsubmit = (ev) => {
    ev.preventDefault();
    if (sendChat($('chat-input').value)) $('chat-input').value = '';
  };
  renderStates();
  setInterval(refresh, 1000);
  if (params.get('autojoin') === '1') join();
});
