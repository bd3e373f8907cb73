//! Producers: what a transport receives, checked against the router and the transport.

use super::*;

impl Sfu {
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
        // Endpoints of plain transports declare no mid: the producer gets one of the
        // transport's, so that it has a place like any other.
        let mid_text = match rtp_parameters.mid.clone() {
            Some(mid) => mid,
            None if t.webrtc().is_none() => (0u32..)
                .map(|n| format!("p{n}"))
                .find(|m| {
                    Mid::new(m).is_some_and(|mid| {
                        !t.producers_by_mid.contains_key(&mid)
                            && !t.consumers_by_mid.contains_key(&mid)
                    })
                })
                .unwrap_or_default(),
            None => return Err(ortc::OrtcError::InvalidParameters("missing mid".into()).into()),
        };
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

        // Layers inside one encoding: from the VP9 payload, or from the dependency descriptor
        // for a codec whose payload does not say them (AV1; H264 only with the descriptor,
        // without it one layer as ever).
        let extensions = ProducerExtensions::new(&rtp_parameters.header_extensions);
        let layers_from_dd = match video_codec {
            Some(VideoCodec::Av1 | VideoCodec::H264) => extensions.dependency_descriptor.is_some(),
            _ => false,
        };
        let svc = match rtp_parameters.encodings.as_slice() {
            [only] if video_codec == Some(VideoCodec::Vp9) || layers_from_dd => {
                crate::router::StreamLayers::new(scalability_mode(only))
            }
            _ => None,
        };
        // Temporal layers inside each of several encodings: VP8's from its payload, AV1's and
        // H264's from the dependency descriptor (each encoding with its own), where no
        // encoding has spatial layers of its own (those are forwarded whole, as before).
        let temporal_in_encodings = video_codec == Some(VideoCodec::Vp8)
            || (layers_from_dd
                && svc.is_none()
                && rtp_parameters
                    .encodings
                    .iter()
                    .all(|e| scalability_mode(e).spatial_layers <= 1));
        let encoding_temporal_layers = rtp_parameters
            .encodings
            .iter()
            .filter(|_| temporal_in_encodings)
            .map(|e| {
                scalability_mode(e)
                    .temporal_layers
                    .clamp(1, crate::router::MAX_ENCODING_TEMPORAL_LAYERS)
            })
            .max()
            .unwrap_or(1);
        for e in &mut encodings {
            if encoding_temporal_layers > 1 {
                e.temporal = Some(Default::default());
            }
            if layers_from_dd && (svc.is_some() || encoding_temporal_layers > 1) {
                e.dd = Some(Default::default());
            }
        }
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
                extensions,
                paused,
                consumers: Vec::new(),
                observers: Vec::new(),
                video_codec,
                encodings,
                svc,
                encoding_temporal_layers,
                clock_rate,
                rtx_payload_types,
                nack,
                pli,
                fir_seq: 0,
                trace: Default::default(),
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
                if paused {
                    crate::sfu::quality::set_current_layer(c, *cid, None, &mut self.out);
                } else {
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

    /// A producer's counters.
    pub fn producer_stats(&self, producer: ProducerId) -> Result<ProducerStats, Error> {
        let p = self.producer(producer)?;
        let mut stats = p.stats.clone();
        stats.bitrate_per_encoding = p
            .encodings
            .iter()
            .map(|e| e.bitrate.bitrate(self.now))
            .collect();
        if let Some(svc) = &p.svc {
            stats.bitrate_per_spatial_layer = svc
                .bitrate
                .iter()
                .take(usize::from(svc.spatial_layers))
                .map(|m| m.bitrate(self.now))
                .collect();
        }
        let temporal_layers = usize::from(p.encoding_temporal_layers);
        stats.bitrate_per_temporal_layer = p
            .encodings
            .iter()
            .filter_map(|e| e.temporal.as_deref())
            .map(|t| t.bitrates(self.now)[..temporal_layers].to_vec())
            .collect();
        stats.score = crate::sfu::quality::producer_scores(p);
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

    /// Whether a producer is paused.
    pub fn producer_paused(&self, producer: ProducerId) -> Result<bool, Error> {
        self.producers
            .get(&producer)
            .map(|p| p.paused)
            .ok_or(Error::UnknownProducer(producer))
    }

    pub(super) fn request_key_frames_for(&mut self, producer: ProducerId) {
        let Some(p) = self.producers.get(&producer) else {
            return;
        };
        let layers: Vec<usize> = p
            .consumers
            .iter()
            .filter_map(|cid| self.consumers.get(cid))
            .filter(|c| c.is_forwarding())
            .map(|c| {
                c.current_layer.unwrap_or(if c.spatial_inside() {
                    0
                } else {
                    c.preferred_layer
                })
            })
            .collect();
        for layer in layers {
            self.request_key_frame(producer, layer);
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
    let rtx: Vec<u8> = crate::transport::rtx_payload_types(caps).collect();
    if let Some(c) = params
        .codecs
        .iter()
        .find(|c| !c.is_rtx() && rtx.contains(&c.payload_type))
    {
        return Err(Error::PayloadTypeConflict(c.payload_type));
    }
    Ok(())
}

/// An encoding's scalability mode (one layer when it has none, or one not understood).
fn scalability_mode(e: &crate::ortc::RtpEncodingParameters) -> ortc::ScalabilityMode {
    ortc::parse_scalability_mode(e.scalability_mode.as_deref())
}
