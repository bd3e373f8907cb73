//! The control API, in mediasoup's terms: routers, transports, producers, consumers.
//!
//! Each call changes state, may queue datagrams and events, and returns at once. Drain
//! [`Sfu::poll_output`] after every call.

use rand::RngCore;
use tracing::{debug, info};

use crate::error::Error;
use crate::event::{ConsumerCloseReason, DtlsState, Event, IceState};
use crate::forward::Rewriter;
use crate::ids::{ConsumerId, Mid, ProducerId, Rid, RouterId, TransportId};
use crate::io::Output;
use crate::keyframe::VideoCodec;
use crate::media::packet::{ExtensionIdMap, ExtensionKind};
use crate::media::send::SendStream;
use crate::media::session::RxRole;
use crate::ortc::{
    self, ConsumerParameters, ConsumerType, DtlsFingerprint, DtlsParameters, IceParameters,
    MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters, RtxParameters,
    WebRtcTransportParameters,
};
use crate::router::{Consumer, Encoding, Producer, Router};
use crate::sfu::{set_dtls_state, Sfu, TimerKey};
use crate::stats::{ConsumerStats, ProducerStats, TransportStats};
use crate::transport::extensions::ProducerExtensions;
use crate::transport::webrtc::drive::Created;
use crate::transport::webrtc::WebRtcLink;
use crate::transport::WebRtcTransportOptions;
use crate::transport::{self, Transport, TransportKind};

/// Options for [`Sfu::create_router`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterOptions {
    /// The codecs the room uses (payload types are assigned by the router).
    pub media_codecs: Vec<RtpCodecCapability>,
}

/// A created WebRTC transport: its id and the parameters to signal to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct WebRtcTransportCreated {
    /// The transport's id.
    pub id: TransportId,
    /// What the client needs (`device.createSendTransport(..)` and friends).
    pub parameters: WebRtcTransportParameters,
}

/// Options for [`Sfu::produce`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceOptions {
    /// Audio or video.
    pub kind: MediaKind,
    /// The RTP parameters the client sends with (mediasoup-client's `produce` request).
    pub rtp_parameters: RtpParameters,
    /// Start paused.
    pub paused: bool,
}

/// Options for [`Sfu::consume`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumeOptions {
    /// The producer to receive.
    pub producer: ProducerId,
    /// What the receiving device can decode (`device.rtpCapabilities`).
    pub rtp_capabilities: RtpCapabilities,
    /// Start paused (mediasoup's recommended flow: resume once the client is ready).
    pub paused: bool,
}

/// A created consumer: its id and the parameters to signal to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    /// The consumer's id.
    pub id: ConsumerId,
    /// What the client needs (`transport.consume(..)`).
    pub parameters: ConsumerParameters,
}

impl Sfu {
    /// Creates a router (a room) with the given media codecs.
    pub fn create_router(&mut self, options: RouterOptions) -> Result<RouterId, Error> {
        let caps = ortc::generate_router_rtp_capabilities(&options.media_codecs)?;
        let id = RouterId::from_raw(self.next_u64());
        self.routers.insert(
            id,
            Router {
                caps,
                transports: Vec::new(),
                producers: Vec::new(),
                observers: Vec::new(),
            },
        );
        info!(router = %id, "router created");
        Ok(id)
    }

    /// A router's RTP capabilities (for `device.load({ routerRtpCapabilities })`).
    pub fn router_rtp_capabilities(&self, router: RouterId) -> Result<&RtpCapabilities, Error> {
        self.routers
            .get(&router)
            .map(|r| &r.caps)
            .ok_or(Error::UnknownRouter(router))
    }

    /// Closes a router and everything in it.
    pub fn close_router(&mut self, router: RouterId) -> Result<(), Error> {
        let r = self.router(router)?;
        let (transports, observers) = (r.transports.clone(), r.observers.clone());
        for tid in transports {
            self.close_transport(tid)?;
        }
        for oid in observers {
            self.close_audio_level_observer(oid)?;
        }
        self.routers.remove(&router);
        info!(router = %router, "router closed");
        Ok(())
    }

    /// Whether a device with these capabilities can receive this producer.
    pub fn can_consume(
        &self,
        producer: ProducerId,
        rtp_capabilities: &RtpCapabilities,
    ) -> Result<bool, Error> {
        let p = self.producer(producer)?;
        Ok(ortc::can_consume(&p.consumable, rtp_capabilities))
    }

    /// Creates a WebRTC transport in a router.
    pub fn create_webrtc_transport(
        &mut self,
        router: RouterId,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportCreated, Error> {
        if !self.routers.contains_key(&router) {
            return Err(Error::UnknownRouter(router));
        }
        if options.listen_infos.is_empty() {
            return Err(Error::InvalidListenInfo("no listen addresses".into()));
        }
        let (ufrag, password) = (self.random_token(16), self.random_token(32));
        let Created {
            link,
            candidates,
            fingerprint,
        } = WebRtcLink::create(
            self.now,
            &self.identity,
            (ufrag.clone(), password.clone()),
            &options,
        )?;
        let id = TransportId::from_raw(self.next_u64());
        let parameters = WebRtcTransportParameters {
            id: id.to_string(),
            ice_parameters: IceParameters {
                username_fragment: ufrag.clone(),
                password,
                ice_lite: Some(true),
            },
            ice_candidates: candidates,
            dtls_parameters: DtlsParameters {
                role: Some(options.dtls_role),
                fingerprints: vec![DtlsFingerprint {
                    algorithm: fingerprint.0,
                    value: fingerprint.1,
                }],
            },
            sctp_parameters: None,
        };
        self.demux.insert_ufrag(ufrag, id);
        self.transports.insert(
            id,
            Box::new(Transport::new(router, TransportKind::WebRtc(link))),
        );
        if let Some(r) = self.routers.get_mut(&router) {
            r.transports.push(id);
        }
        self.drain(id);
        self.run_work();
        info!(transport = %id, router = %router, "WebRTC transport created");
        Ok(WebRtcTransportCreated { id, parameters })
    }

    /// Gives a transport the client's DTLS parameters. A transport created with the DTLS role
    /// [`Auto`](crate::ortc::DtlsRole::Auto) takes the other role (the client's `client`,
    /// `auto` or no role makes it the DTLS server, `server` the DTLS client); one created as
    /// `Client` or `Server` keeps that role, and a client asking for the same one gets
    /// [`Error::DtlsRoleConflict`].
    pub fn connect_webrtc_transport(
        &mut self,
        transport: TransportId,
        dtls_parameters: &DtlsParameters,
    ) -> Result<(), Error> {
        let t = self
            .transports
            .get_mut(&transport)
            .ok_or(Error::UnknownTransport(transport))?;
        let link = t.webrtc_mut().ok_or(Error::NotWebRtc(transport))?;
        if link.connected {
            return Err(Error::AlreadyConnected(transport));
        }
        link.connect(dtls_parameters)?;
        let mut out = std::mem::take(&mut self.out);
        set_dtls_state(t, transport, DtlsState::Connecting, &mut out);
        self.out = out;
        self.kick(transport);
        Ok(())
    }

    /// New ICE credentials for a transport (the client then calls `restartIce`).
    pub fn restart_ice(&mut self, transport: TransportId) -> Result<IceParameters, Error> {
        let (ufrag, password) = (self.random_token(16), self.random_token(32));
        let link = self
            .transport_mut(transport)?
            .webrtc_mut()
            .ok_or(Error::NotWebRtc(transport))?;
        let old = link.restart_ice((ufrag.clone(), password.clone()));
        self.demux.remove_ufrag(&old);
        self.demux.insert_ufrag(ufrag.clone(), transport);
        self.kick(transport);
        Ok(IceParameters {
            username_fragment: ufrag,
            password,
            ice_lite: Some(true),
        })
    }

    /// Closes a transport with its producers and consumers.
    pub fn close_transport(&mut self, transport: TransportId) -> Result<(), Error> {
        let t = self.transport(transport)?;
        let producers: Vec<ProducerId> = t.producers_by_mid.values().copied().collect();
        let consumers: Vec<ConsumerId> = t.consumers_by_mid.values().copied().collect();
        for pid in producers {
            self.close_producer(pid)?;
        }
        for cid in consumers {
            self.remove_consumer(cid, Some(ConsumerCloseReason::TransportClosed));
        }
        if let Some(mut t) = self.transports.remove(&transport) {
            // Say goodbye (DTLS close_notify) before forgetting the transport.
            let mut ice_state = IceState::Closed;
            if let Some(link) = t.webrtc_mut() {
                link.close(|tx| self.out.push_back(Output::Transmit(tx)));
                for tuple in &link.tuples {
                    self.demux.remove_tuple(tuple);
                }
                self.demux.remove_ufrag(&link.ufrag);
                ice_state = link.ice_state;
            }
            self.timers.cancel(TimerKey::Transport(transport));
            self.timers.cancel(TimerKey::Media(transport));
            if let Some(r) = self.routers.get_mut(&t.router) {
                r.transports.retain(|&x| x != transport);
            }
            if t.webrtc().is_some() && ice_state != IceState::Closed {
                self.out.push_back(Output::Event(Event::IceStateChange {
                    transport,
                    state: IceState::Closed,
                }));
            }
            self.out
                .push_back(Output::Event(Event::TransportClosed { transport }));
            info!(transport = %transport, "transport closed");
        }
        Ok(())
    }

    /// Starts receiving a media source on a transport.
    pub fn produce(
        &mut self,
        transport: TransportId,
        options: ProduceOptions,
    ) -> Result<ProducerId, Error> {
        let ProduceOptions {
            kind,
            mut rtp_parameters,
            paused,
        } = options;
        let t = self.transport(transport)?;
        let router = t.router;
        let caps = &self
            .routers
            .get(&router)
            .ok_or(Error::UnknownRouter(router))?
            .caps;
        let mapping = ortc::get_producer_rtp_mapping(&rtp_parameters, caps)?;
        check_producer_fits_transport(&rtp_parameters, caps)?;
        t.rx_extensions.check(&rtp_parameters.header_extensions)?;
        let mid_text = rtp_parameters
            .mid
            .clone()
            .ok_or_else(|| ortc::OrtcError::InvalidParameters("missing mid".into()))?;
        let mid = short_id(Mid::new, &mid_text, "mid")?;
        if t.producers_by_mid.contains_key(&mid) || t.consumers_by_mid.contains_key(&mid) {
            return Err(Error::MidInUse(mid_text));
        }
        let mut encodings = Vec::with_capacity(rtp_parameters.encodings.len());
        for e in &rtp_parameters.encodings {
            let rid = e
                .rid
                .as_deref()
                .map(|r| short_id(Rid::new, r, "rid"))
                .transpose()?;
            for ssrc in e.ssrc.into_iter().chain(e.rtx.as_ref().map(|r| r.ssrc)) {
                if t.producer_ssrcs.contains_key(&ssrc) {
                    return Err(Error::SsrcInUse(ssrc));
                }
            }
            encodings.push(Encoding::new(e.ssrc, rid, e.rtx.as_ref().map(|r| r.ssrc)));
        }
        // As mediasoup does, every producer of a transport gets the transport's cname: the first
        // non-empty one a producer brought, or a made-up one. Browsers send an empty cname with
        // rid simulcast, and receivers need a non-empty one to build their stream ids.
        let cname = match (&t.cname, rtp_parameters.rtcp.cname.as_deref()) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) if !c.is_empty() => c.to_owned(),
            (None, _) => format!("sfu-{:016x}", self.rng.next_u64()),
        };
        rtp_parameters.rtcp.cname = Some(cname.clone());
        let consumable = ortc::get_consumable_rtp_parameters(kind, &rtp_parameters, caps, &mapping);
        let video_codec = (kind == MediaKind::Video).then(|| {
            rtp_parameters
                .codecs
                .iter()
                .find(|c| !c.is_rtx())
                .map_or(VideoCodec::Other, |c| VideoCodec::from_mime(&c.mime_type))
        });

        let main = rtp_parameters.codecs.iter().find(|c| !c.is_rtx());
        let clock_rate = main.map_or(90_000, |c| c.clock_rate);
        let has_feedback = |kind: &str, param: &str| {
            main.is_some_and(|c| {
                c.rtcp_feedback
                    .iter()
                    .any(|f| f.kind == kind && f.parameter == param)
            })
        };
        let (nack, pli) = (has_feedback("nack", ""), has_feedback("nack", "pli"));
        let rtx_payload_types: Vec<(u8, u8)> = rtp_parameters
            .codecs
            .iter()
            .filter(|c| c.is_rtx())
            .filter_map(|c| {
                let apt = ortc::codec_param_u32(&c.parameters, "apt")?;
                Some((c.payload_type, u8::try_from(apt).ok()?))
            })
            .collect();

        let pid = ProducerId::from_raw(self.next_u64());
        let Some(t) = self.transports.get_mut(&transport) else {
            return Err(Error::UnknownTransport(transport));
        };
        t.producers_by_mid.insert(mid, pid);
        t.rx_extensions.declare(&rtp_parameters.header_extensions);
        t.cname.get_or_insert(cname);
        for (i, e) in encodings.iter().enumerate() {
            if let Some(ssrc) = e.ssrc {
                t.producer_ssrcs.insert(ssrc, (pid, i, RxRole::Media));
            }
            if let Some(ssrc) = e.rtx_ssrc {
                t.producer_ssrcs.insert(ssrc, (pid, i, RxRole::Rtx));
            }
        }
        let n = encodings.len();
        self.producers.insert(
            pid,
            Producer {
                router,
                transport,
                kind,
                mid,
                consumable,
                extensions: ProducerExtensions::new(&rtp_parameters.header_extensions),
                paused,
                consumers: Vec::new(),
                observers: Vec::new(),
                video_codec,
                encodings,
                clock_rate,
                rtx_payload_types,
                nack,
                pli,
                fir_seq: 0,
                stats: ProducerStats {
                    packets_per_encoding: vec![0; n],
                    ..Default::default()
                },
            },
        );
        if let Some(r) = self.routers.get_mut(&router) {
            r.producers.push(pid);
        }
        self.wake_media(transport);
        self.kick(transport);
        info!(producer = %pid, transport = %transport, ?kind, "producer created");
        Ok(pid)
    }

    /// Closes a producer; its consumers close too and report [`Event::ConsumerClosed`].
    pub fn close_producer(&mut self, producer: ProducerId) -> Result<(), Error> {
        let p = self
            .producers
            .remove(&producer)
            .ok_or(Error::UnknownProducer(producer))?;
        for cid in &p.consumers {
            self.remove_consumer(*cid, Some(ConsumerCloseReason::ProducerClosed));
        }
        if let Some(t) = self.transports.get_mut(&p.transport) {
            t.producers_by_mid.remove(&p.mid);
            t.producer_ssrcs.retain(|_, (pid, _, _)| *pid != producer);
            if let Some(session) = t.media.as_mut() {
                session.rx_ssrcs.retain(|_, rx| rx.producer != producer);
            }
        }
        if let Some(r) = self.routers.get_mut(&p.router) {
            r.producers.retain(|&x| x != producer);
        }
        for layer in 0..p.encodings.len() {
            self.timers.cancel(TimerKey::KeyFrame(producer, layer));
        }
        self.unobserve_producer(producer, &p.observers);
        self.out
            .push_back(Output::Event(Event::ProducerClosed { producer }));
        self.kick(p.transport);
        info!(producer = %producer, "producer closed");
        Ok(())
    }

    /// Pauses a producer: nothing is forwarded; its consumers learn of it.
    pub fn pause_producer(&mut self, producer: ProducerId) -> Result<(), Error> {
        self.set_producer_paused(producer, true)
    }

    /// Resumes a producer; its video consumers restart at the next key frame (requested now).
    pub fn resume_producer(&mut self, producer: ProducerId) -> Result<(), Error> {
        self.set_producer_paused(producer, false)
    }

    fn set_producer_paused(&mut self, producer: ProducerId, paused: bool) -> Result<(), Error> {
        let p = self.producer_mut(producer)?;
        if p.paused == paused {
            return Ok(());
        }
        p.paused = paused;
        let consumers = p.consumers.clone();
        for cid in &consumers {
            if let Some(c) = self.consumers.get_mut(cid) {
                c.producer_paused = paused;
                if !paused {
                    c.rewriter.request_resync();
                }
                let event = if paused {
                    Event::ConsumerProducerPaused { consumer: *cid }
                } else {
                    Event::ConsumerProducerResumed { consumer: *cid }
                };
                self.out.push_back(Output::Event(event));
            }
        }
        if !paused {
            self.request_key_frames_for(producer);
        }
        debug!(producer = %producer, paused, "producer paused state");
        self.run_work();
        Ok(())
    }

    /// Starts sending a producer to a transport's endpoint.
    pub fn consume(
        &mut self,
        transport: TransportId,
        options: ConsumeOptions,
    ) -> Result<Consumed, Error> {
        let ConsumeOptions {
            producer,
            rtp_capabilities,
            paused,
        } = options;
        let t = self.transport(transport)?;
        let p = self.producer(producer)?;
        if p.router != t.router {
            return Err(Error::WrongRouter(producer));
        }
        if !ortc::can_consume(&p.consumable, &rtp_capabilities) {
            return Err(Error::CannotConsume(producer));
        }
        let mut rtp = ortc::get_consumer_rtp_parameters(&p.consumable, &rtp_capabilities)?;
        let main = rtp
            .codecs
            .iter()
            .find(|c| !c.is_rtx())
            .ok_or(Error::CannotConsume(producer))?;
        let (payload_type, clock_rate) = (main.payload_type, main.clock_rate);
        let rtx_payload_type = rtp
            .codecs
            .iter()
            .filter(|c| c.is_rtx())
            .find(|c| ortc::codec_param_u32(&c.parameters, "apt") == Some(u32::from(payload_type)))
            .map(|c| c.payload_type);
        let has_rtx = rtx_payload_type.is_some();
        let (extensions, mid_extension, transport_cc_extension) =
            consumer_extensions(&p.extensions.to_router, &rtp.header_extensions);
        let kind = p.kind;
        let simulcast = p.encodings.len() > 1;
        let preferred_layer = p.encodings.len().saturating_sub(1);
        let producer_paused = p.paused;

        let ssrc = self.random_ssrc();
        let rtx_ssrc = has_rtx.then(|| self.random_ssrc());
        let initial_seq = (self.next_u64() % 0x7fff) as u16;
        let initial_rtx_seq = (self.next_u64() % 0x7fff) as u16;
        let cid = ConsumerId::from_raw(self.next_u64());
        let Some(t) = self.transports.get_mut(&transport) else {
            return Err(Error::UnknownTransport(transport));
        };
        let mid = t.next_consumer_mid();
        rtp.mid = Some(mid.to_string());
        if let Some(e) = rtp.encodings.first_mut() {
            e.ssrc = Some(ssrc);
            e.rtx = rtx_ssrc.map(|ssrc| RtxParameters { ssrc });
        }
        t.consumers_by_mid.insert(mid, cid);
        t.consumers_by_ssrc.insert(ssrc, cid);
        let parameters = ConsumerParameters {
            id: cid.to_string(),
            producer_id: producer.to_string(),
            kind,
            consumer_type: if simulcast {
                ConsumerType::Simulcast
            } else {
                ConsumerType::Simple
            },
            producer_paused,
            rtp_parameters: rtp,
        };
        self.consumers.insert(
            cid,
            Consumer {
                producer,
                transport,
                kind,
                mid,
                ssrc,
                payload_type,
                clock_rate,
                paused,
                producer_paused,
                rewriter: Rewriter::new(initial_seq),
                current_layer: None,
                preferred_layer,
                parameters: parameters.clone(),
                rtx_payload_type,
                send: SendStream::new(ssrc, rtx_ssrc, clock_rate, initial_rtx_seq),
                extensions,
                mid_extension,
                transport_cc_extension,
                first_sent_at: None,
                report_clock: None,
                stats: ConsumerStats::default(),
            },
        );
        if let Some(p) = self.producers.get_mut(&producer) {
            p.consumers.push(cid);
        }
        if !paused && !producer_paused {
            self.request_key_frame(producer, preferred_layer);
        }
        self.wake_media(transport);
        self.kick(transport);
        info!(consumer = %cid, producer = %producer, transport = %transport, "consumer created");
        Ok(Consumed {
            id: cid,
            parameters,
        })
    }

    /// The parameters a consumer was created with.
    pub fn consumer_parameters(&self, consumer: ConsumerId) -> Result<&ConsumerParameters, Error> {
        self.consumers
            .get(&consumer)
            .map(|c| &c.parameters)
            .ok_or(Error::UnknownConsumer(consumer))
    }

    /// Pauses a consumer: nothing is sent to its endpoint.
    pub fn pause_consumer(&mut self, consumer: ConsumerId) -> Result<(), Error> {
        let c = self.consumer_mut(consumer)?;
        c.paused = true;
        Ok(())
    }

    /// Resumes a consumer; video restarts at a key frame, which is requested now.
    pub fn resume_consumer(&mut self, consumer: ConsumerId) -> Result<(), Error> {
        let c = self.consumer_mut(consumer)?;
        if !c.paused {
            return Ok(());
        }
        c.paused = false;
        c.rewriter.request_resync();
        let (pid, layer, forwarding) = (
            c.producer,
            c.current_layer.unwrap_or(c.preferred_layer),
            c.is_forwarding(),
        );
        if forwarding {
            self.request_key_frame(pid, layer);
            self.run_work();
        }
        Ok(())
    }

    /// Closes a consumer.
    pub fn close_consumer(&mut self, consumer: ConsumerId) -> Result<(), Error> {
        if !self.consumers.contains_key(&consumer) {
            return Err(Error::UnknownConsumer(consumer));
        }
        self.remove_consumer(consumer, None);
        Ok(())
    }

    /// Chooses the simulcast encoding (spatial layer, 0 = lowest) a consumer should receive
    /// when available. The switch happens at the next key frame of that layer.
    pub fn set_consumer_preferred_layers(
        &mut self,
        consumer: ConsumerId,
        spatial_layer: usize,
    ) -> Result<(), Error> {
        let c = self.consumer_mut(consumer)?;
        c.preferred_layer = spatial_layer;
        Ok(())
    }

    /// Asks the producer of a consumer for a key frame (throttled).
    pub fn request_consumer_key_frame(&mut self, consumer: ConsumerId) -> Result<(), Error> {
        let c = self.consumer(consumer)?;
        let (pid, layer) = (c.producer, c.current_layer.unwrap_or(c.preferred_layer));
        self.request_key_frame(pid, layer);
        self.run_work();
        Ok(())
    }

    /// A transport's state and counters.
    pub fn transport_stats(&self, transport: TransportId) -> Result<TransportStats, Error> {
        self.transports
            .get(&transport)
            .map(|t| t.stats.clone())
            .ok_or(Error::UnknownTransport(transport))
    }

    /// A producer's counters.
    pub fn producer_stats(&self, producer: ProducerId) -> Result<ProducerStats, Error> {
        let p = self.producer(producer)?;
        let mut stats = p.stats.clone();
        for e in &p.encodings {
            if let Some(recv) = &e.recv {
                stats.packets_lost += recv.packets_lost();
                stats.jitter = stats.jitter.max(recv.jitter());
            }
            if let Some(nack) = &e.nack {
                stats.nacked_packets += nack.nacks_sent();
                stats.packets_recovered += nack.recovered();
                stats.packets_given_up += nack.given_up();
            }
        }
        Ok(stats)
    }

    /// A consumer's counters.
    pub fn consumer_stats(&self, consumer: ConsumerId) -> Result<ConsumerStats, Error> {
        let c = self.consumer(consumer)?;
        let send = c.send.stats();
        Ok(ConsumerStats {
            nacked_packets: send.nacked_packets,
            packets_retransmitted: send.packets_retransmitted,
            retransmissions_refused: send.retransmissions_refused_budget,
            retransmissions_not_found: send.retransmissions_not_found,
            fraction_lost: send.fraction_lost,
            packets_lost: send.packets_lost,
            round_trip_time: send.rtt,
            ..c.stats.clone()
        })
    }

    /// Whether a producer is paused.
    pub fn producer_paused(&self, producer: ProducerId) -> Result<bool, Error> {
        self.producers
            .get(&producer)
            .map(|p| p.paused)
            .ok_or(Error::UnknownProducer(producer))
    }

    /// The number of routers, transports, producers and consumers alive.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.routers.len(),
            self.transports.len(),
            self.producers.len(),
            self.consumers.len(),
        )
    }

    fn router(&self, id: RouterId) -> Result<&Router, Error> {
        self.routers.get(&id).ok_or(Error::UnknownRouter(id))
    }

    fn transport(&self, id: TransportId) -> Result<&Transport, Error> {
        self.transports
            .get(&id)
            .map(|t| &**t)
            .ok_or(Error::UnknownTransport(id))
    }

    fn transport_mut(&mut self, id: TransportId) -> Result<&mut Transport, Error> {
        self.transports
            .get_mut(&id)
            .map(|t| &mut **t)
            .ok_or(Error::UnknownTransport(id))
    }

    fn producer(&self, id: ProducerId) -> Result<&Producer, Error> {
        self.producers.get(&id).ok_or(Error::UnknownProducer(id))
    }

    fn producer_mut(&mut self, id: ProducerId) -> Result<&mut Producer, Error> {
        self.producers
            .get_mut(&id)
            .ok_or(Error::UnknownProducer(id))
    }

    fn consumer(&self, id: ConsumerId) -> Result<&Consumer, Error> {
        self.consumers.get(&id).ok_or(Error::UnknownConsumer(id))
    }

    fn consumer_mut(&mut self, id: ConsumerId) -> Result<&mut Consumer, Error> {
        self.consumers
            .get_mut(&id)
            .ok_or(Error::UnknownConsumer(id))
    }

    fn remove_consumer(&mut self, consumer: ConsumerId, reason: Option<ConsumerCloseReason>) {
        let Some(c) = self.consumers.remove(&consumer) else {
            return;
        };
        if let Some(p) = self.producers.get_mut(&c.producer) {
            p.consumers.retain(|&x| x != consumer);
        }
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.consumers_by_mid.remove(&c.mid);
            t.consumers_by_ssrc.remove(&c.ssrc);
        }
        if let Some(reason) = reason {
            self.out
                .push_back(Output::Event(Event::ConsumerClosed { consumer, reason }));
        }
        self.kick(c.transport);
        debug!(consumer = %consumer, ?reason, "consumer closed");
    }

    fn request_key_frames_for(&mut self, producer: ProducerId) {
        let Some(p) = self.producers.get(&producer) else {
            return;
        };
        let layers: Vec<usize> = p
            .consumers
            .iter()
            .filter_map(|cid| self.consumers.get(cid))
            .filter(|c| c.is_forwarding())
            .map(|c| c.current_layer.unwrap_or(c.preferred_layer))
            .collect();
        for layer in layers {
            self.request_key_frame(producer, layer);
        }
    }

    /// Lets a transport's `Rtc` act on a change made through its API, then drains it.
    fn kick(&mut self, transport: TransportId) {
        let now = self.now;
        if let Some(t) = self.transports.get_mut(&transport) {
            if let Some(Err(_)) = t.webrtc_mut().map(|link| link.timeout(now)) {
                t.stats.rtc_errors += 1;
            }
            self.drain(transport);
        }
        self.run_work();
    }

    fn random_token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    pub(crate) fn random_ssrc(&mut self) -> u32 {
        loop {
            let ssrc = self.next_u64() as u32;
            if ssrc > 1 && ssrc != 1234 {
                return ssrc;
            }
        }
    }
}

/// A mid or rid: 1 to 16 bytes of visible ASCII.
fn short_id<T>(new: fn(&str) -> Option<T>, text: &str, what: &str) -> Result<T, Error> {
    new(text)
        .ok_or_else(|| ortc::OrtcError::InvalidParameters(format!("bad {what} {text:?}")).into())
}

/// Every transport parses RTP with one payload type table (see `transport::webrtc`): a producer
/// must not use a router RTX payload type for media. (Its header extension ids are its own; the
/// transport checks them against its other producers'.)
fn check_producer_fits_transport(
    params: &RtpParameters,
    caps: &RtpCapabilities,
) -> Result<(), Error> {
    let rtx: Vec<u8> = transport::rtx_payload_types(caps).collect();
    if let Some(c) = params
        .codecs
        .iter()
        .find(|c| !c.is_rtx() && rtx.contains(&c.payload_type))
    {
        return Err(Error::PayloadTypeConflict(c.payload_type));
    }
    Ok(())
}

/// How a consumer's packets carry the producer's header extensions: each extension the
/// consumer's endpoint negotiated (under the router's id) is taken from the producer's packets
/// under the producer's own id for it (`to_router` maps the producer's ids to the router's),
/// except the ones written per consumer: its mid and its transport's transport-wide sequence
/// number (returned apart), and the producer's rid and repaired rid, which a consumer never
/// sends.
fn consumer_extensions(
    to_router: &ExtensionIdMap,
    negotiated: &[ortc::RtpHeaderExtensionParameters],
) -> (ExtensionIdMap, Option<u8>, Option<u8>) {
    let mut map = ExtensionIdMap::new();
    let (mut mid, mut transport_cc) = (None, None);
    for ext in negotiated {
        match ExtensionKind::from_uri(&ext.uri) {
            ExtensionKind::Mid => mid = Some(ext.id),
            ExtensionKind::TransportWideCc => transport_cc = Some(ext.id),
            ExtensionKind::Rid | ExtensionKind::RepairedRid => {}
            _ => {
                for from in (1..=u8::MAX).filter(|&from| to_router.get(from) == Some(ext.id)) {
                    map.set(from, ext.id);
                }
            }
        }
    }
    (map, mid, transport_cc)
}
