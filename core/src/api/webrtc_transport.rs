//! WebRTC transports: creation, `connect`, ICE restart, close and stats.

use super::*;

impl Sfu {
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
            sctp_parameters: options.sctp_parameters(),
        };
        self.demux.insert_ufrag(ufrag, id);
        let mut transport = Transport::new(
            router,
            TransportKind::WebRtc(link),
            self.config.gso_segments,
        );
        if options.enable_sctp {
            transport.stats.sctp_state = Some(SctpState::New);
        }
        transport.bwe = Bwe::new(options.initial_available_outgoing_bitrate);
        transport.start_bitrate = transport.bwe.estimate();
        self.transports.insert(id, Box::new(transport));
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
        self.close_transport_data(transport);
        self.pipes
            .retain(|_, (a, b)| *a != transport && *b != transport);
        if let Some(mut t) = self.transports.remove(&transport) {
            // Say goodbye (DTLS close_notify, a pipe's SCTP SHUTDOWN) before forgetting the
            // transport.
            let mut ice_state = IceState::Closed;
            if let Some(link) = t.webrtc_mut() {
                link.close(|tx| self.out.push_back(Output::Transmit(tx)));
                for tuple in &link.tuples {
                    self.demux.remove_tuple(tuple);
                }
                self.demux.remove_ufrag(&link.ufrag);
                ice_state = link.ice_state;
            }
            if let (Some(tuple), Some(sctp)) = (t.selected, t.pipe_sctp_mut()) {
                let (out, buffers) = (&mut self.out, &mut self.buffers);
                sctp.shut_down(self.now, |datagram| {
                    out.push_back(Output::Transmit(Transmit {
                        proto: tuple.proto,
                        source: tuple.local,
                        destination: tuple.remote,
                        contents: buffers.copy_of(datagram),
                        segment_size: None,
                    }));
                });
            }
            if let Some(link) = t.plain() {
                link.unroute(&mut self.demux);
            }
            self.timers.cancel(TimerKey::Transport(transport));
            self.timers.cancel(TimerKey::Media(transport));
            self.timers.cancel(TimerKey::Pace(transport));
            self.timers.cancel(TimerKey::Consent(transport));
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

    /// Closes a transport's data producers (their data consumers close too) and data
    /// consumers.
    fn close_transport_data(&mut self, transport: TransportId) {
        let Some(t) = self.transports.get(&transport) else {
            return;
        };
        let streams: Vec<DataStream> = t.data_streams.values().copied().collect();
        for stream in streams {
            match stream {
                DataStream::Producer(dpid) => {
                    // It exists while its stream is listed: closing it cannot fail.
                    let _ = self.close_data_producer(dpid);
                }
                DataStream::Consumer(dcid) => {
                    self.remove_data_consumer(dcid, Some(DataConsumerCloseReason::TransportClosed))
                }
            }
        }
    }

    /// A transport's state and counters.
    pub fn transport_stats(&self, transport: TransportId) -> Result<TransportStats, Error> {
        let t = self.transport(transport)?;
        let mut stats = t.stats.clone();
        if let Some(link) = t.webrtc() {
            stats.sctp_dropped = link.key_slot.sctp_dropped();
        }
        stats.available_outgoing_bitrate = t.bwe.estimate();
        let counters = t.bwe.counters;
        stats.feedback_ignored = counters.reports_ignored + counters.feedbacks_ignored;
        let probes = t.bwe.probe_counters();
        stats.probe_clusters = probes.clusters;
        stats.probe_clusters_carried = probes.carried;
        stats.probe_clusters_failed = probes.failed;
        stats.probe_packets = probes.packets;
        let counters = t.pacer.counters;
        stats.pacer_dropped_enhancement = counters.dropped_stale + counters.dropped_dependent;
        stats.pacer_dropped = stats.pacer_dropped_enhancement + counters.lost;
        stats.pacer_refused = t.pacer.counters.refused;
        Ok(stats)
    }

    /// Lets a transport's `Rtc` act on a change made through its API, then drains it.
    pub(super) fn kick(&mut self, transport: TransportId) {
        let now = self.now;
        if let Some(t) = self.transports.get_mut(&transport) {
            if let Some(Err(_)) = t.webrtc_mut().map(|link| link.timeout(now)) {
                t.stats.rtc_errors += 1;
            }
            self.drain(transport);
        }
        self.run_work();
    }

    pub(super) fn random_token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}
