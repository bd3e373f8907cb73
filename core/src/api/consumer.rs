//! Consumers: a producer forwarded to a transport, with the parameters its endpoint needs.

use super::*;
use crate::sfu::quality::set_current_layer;

impl Sfu {
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
        if t.pipe_rtx().is_some() {
            return self.consume_pipe(transport, producer, paused);
        }
        let p = self.producer(producer)?;
        if p.router != t.router {
            return Err(Error::WrongRouter(producer));
        }
        if !ortc::can_consume(&p.consumable, &rtp_capabilities) {
            return Err(Error::CannotConsume(producer));
        }
        let mut rtp = ortc::get_consumer_rtp_parameters(&p.consumable, &rtp_capabilities)?;
        let (payload_type, clock_rate, rtx_payload_type) =
            send_payload_types(&rtp).ok_or(Error::CannotConsume(producer))?;
        let has_rtx = rtx_payload_type.is_some();
        let (extensions, [mid_extension, transport_cc_extension, abs_send_time_extension]) =
            consumer_extensions(&p.extensions.to_router, &rtp.header_extensions);
        let kind = p.kind;
        let simulcast = p.encodings.len() > 1;
        let layers = match &p.svc {
            Some(s) => Some(s.filter()),
            // Temporal layers inside the encodings, within whichever one is forwarded.
            None => (p.encoding_temporal_layers > 1)
                .then(|| crate::layers::LayerFilter::new(1, p.encoding_temporal_layers, false)),
        };
        let preferred_layer = match (&p.svc, &layers) {
            (Some(_), Some(f)) => usize::from(f.spatial_layers() - 1),
            _ => p.encodings.len().saturating_sub(1),
        };
        let producer_paused = p.paused;
        let svc = p.svc.is_some();

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
        if let (Some(rtx), Some(_)) = (rtx_ssrc, t.direct()) {
            // A direct transport hands the application its consumers' retransmissions too.
            t.consumers_by_ssrc.insert(rtx, cid);
        }
        let initial_score = self.initial_consumer_score(producer);
        let parameters = ConsumerParameters {
            id: cid.to_string(),
            producer_id: producer.to_string(),
            kind,
            consumer_type: if simulcast {
                ConsumerType::Simulcast
            } else if svc {
                ConsumerType::Svc
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
                target_layer: None,
                priority: 1,
                parameters: parameters.clone(),
                rtx_payload_type,
                send: SendStream::new(ssrc, rtx_ssrc, clock_rate, initial_rtx_seq),
                extensions,
                mid_extension,
                transport_cc_extension,
                abs_send_time_extension,
                first_sent_at: None,
                enhancement_picture_open: false,
                report_clock: None,
                stats: ConsumerStats {
                    priority: 1,
                    ..ConsumerStats::default()
                },
                pipe: None,
                layers,
                descriptor_rewritten: false,
                preferred_temporal_layer: None,
                target_temporal_layer: None,
                trace: Default::default(),
                reported_layers: None,
                score: initial_score,
                score_base: None,
            },
        );
        if let Some(p) = self.producers.get_mut(&producer) {
            p.consumers.push(cid);
        }
        self.allocate(transport);
        if !paused && !producer_paused {
            let layer = self.consumers.get(&cid).map_or(0, |c| c.wanted_encoding());
            self.request_key_frame(producer, layer);
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
        let c = self
            .consumers
            .get_mut(&consumer)
            .ok_or(Error::UnknownConsumer(consumer))?;
        c.paused = true;
        // It restarts at a key frame, on the layer it should get then.
        set_current_layer(c, consumer, None, &mut self.out);
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
        let (pid, layers, forwarding) = (c.producer, c.key_frame_layers(), c.is_forwarding());
        if forwarding {
            for layer in layers {
                self.request_key_frame(pid, layer);
            }
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
    /// when available, or for an SVC producer the spatial layer of its stream. The switch
    /// happens at the next key frame of that layer (going down in SVC: at the next picture).
    pub fn set_consumer_preferred_layers(
        &mut self,
        consumer: ConsumerId,
        spatial_layer: usize,
    ) -> Result<(), Error> {
        let c = self.consumer_mut(consumer)?;
        c.preferred_layer = spatial_layer;
        Ok(())
    }

    /// Chooses the temporal layer (0 = lowest frame rate; `None`: the highest) a consumer of
    /// a producer with temporal layers (VP9 SVC, `L1T3`) should receive: up at the next
    /// switching point, down at the next picture (mediasoup's `preferredLayers.temporalLayer`).
    pub fn set_consumer_preferred_temporal_layer(
        &mut self,
        consumer: ConsumerId,
        temporal_layer: Option<usize>,
    ) -> Result<(), Error> {
        let c = self.consumer_mut(consumer)?;
        c.preferred_temporal_layer = temporal_layer.map(|t| t.min(usize::from(u8::MAX)) as u8);
        Ok(())
    }

    /// Sets a consumer's priority (1..=255, 1 by default; 0 counts as 1): its transport's
    /// bandwidth is shared among its video consumers in proportion to their priorities
    /// (mediasoup's `setPriority`).
    pub fn set_consumer_priority(
        &mut self,
        consumer: ConsumerId,
        priority: u8,
    ) -> Result<(), Error> {
        let c = self.consumer_mut(consumer)?;
        c.priority = priority.max(1);
        c.stats.priority = c.priority;
        let tid = c.transport;
        self.allocate(tid);
        Ok(())
    }

    /// Asks the producer of a consumer for a key frame (throttled).
    pub fn request_consumer_key_frame(&mut self, consumer: ConsumerId) -> Result<(), Error> {
        let c = self.consumer(consumer)?;
        let (pid, layers) = (c.producer, c.key_frame_layers());
        for layer in layers {
            self.request_key_frame(pid, layer);
        }
        self.run_work();
        Ok(())
    }

    /// A consumer's counters.
    pub fn consumer_stats(&self, consumer: ConsumerId) -> Result<ConsumerStats, Error> {
        let c = self.consumer(consumer)?;
        if c.pipe.is_some() {
            // A pipe consumer answers NACKs from the producer's packets, counted as it goes.
            return Ok(ConsumerStats {
                score: c.score.clone(),
                ..c.stats.clone()
            });
        }
        let send = c.send.stats();
        Ok(ConsumerStats {
            nacked_packets: send.nacked_packets,
            packets_retransmitted: send.packets_retransmitted,
            retransmissions_refused: send.retransmissions_refused_budget,
            retransmissions_not_found: send.retransmissions_not_found,
            fraction_lost: send.fraction_lost,
            packets_lost: send.packets_lost,
            round_trip_time: send.rtt,
            score: c.score.clone(),
            ..c.stats.clone()
        })
    }

    pub(crate) fn remove_consumer(
        &mut self,
        consumer: ConsumerId,
        reason: Option<ConsumerCloseReason>,
    ) {
        let Some(c) = self.consumers.remove(&consumer) else {
            return;
        };
        if let Some(p) = self.producers.get_mut(&c.producer) {
            p.consumers.retain(|&x| x != consumer);
        }
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.consumers_by_mid.remove(&c.mid);
            t.consumers_by_ssrc
                .retain(|_, &mut owner| owner != consumer);
        }
        if let Some(reason) = reason {
            self.out
                .push_back(Output::Event(Event::ConsumerClosed { consumer, reason }));
        }
        self.kick(c.transport);
        debug!(consumer = %consumer, ?reason, "consumer closed");
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

/// How a consumer's packets carry the producer's header extensions: each extension the
/// consumer's endpoint negotiated (under the router's id) is taken from the producer's packets
/// under the producer's own id for it (`to_router` maps the producer's ids to the router's),
/// except the ones written per consumer (their ids returned apart): its mid, its transport's
/// transport-wide sequence number and the time it is sent (abs-send-time, which receivers
/// without transport-cc estimate the path from); the producer's rid and repaired rid a
/// consumer never sends.
pub(super) fn consumer_extensions(
    to_router: &ExtensionIdMap,
    negotiated: &[ortc::RtpHeaderExtensionParameters],
) -> (ExtensionIdMap, [Option<u8>; 3]) {
    let mut map = ExtensionIdMap::new();
    let (mut mid, mut transport_cc, mut abs_send_time) = (None, None, None);
    for ext in negotiated {
        match ExtensionKind::from_uri(&ext.uri) {
            ExtensionKind::Mid => mid = Some(ext.id),
            ExtensionKind::TransportWideCc => transport_cc = Some(ext.id),
            ExtensionKind::AbsSendTime => abs_send_time = Some(ext.id),
            ExtensionKind::Rid | ExtensionKind::RepairedRid => {}
            _ => {
                for from in (1..=u8::MAX).filter(|&from| to_router.get(from) == Some(ext.id)) {
                    map.set(from, ext.id);
                }
            }
        }
    }
    (map, [mid, transport_cc, abs_send_time])
}

/// A consumer's payload type and clock rate (its first codec that is not RTX), and the RTX
/// payload type that retransmits it, if any.
pub(super) fn send_payload_types(rtp: &RtpParameters) -> Option<(u8, u32, Option<u8>)> {
    let main = rtp.codecs.iter().find(|c| !c.is_rtx())?;
    let rtx = rtp
        .codecs
        .iter()
        .filter(|c| c.is_rtx())
        .find(|c| ortc::codec_param_u32(&c.parameters, "apt") == Some(u32::from(main.payload_type)))
        .map(|c| c.payload_type);
    Some((main.payload_type, main.clock_rate, rtx))
}
