//! The dependency descriptor RTP header extension (the AV1 RTP payload format's Appendix A):
//! for each packet, the spatial and temporal layer of its frame, what the frame means to each
//! decode target (its decode target indications), the frames it refers to and the chains.
//!
//! A coded video sequence starts with a template dependency structure; later descriptors name
//! one of its templates and may override parts of it. [`Parser`] keeps one stream's current
//! structure: a descriptor whose structure does not parse leaves the previous one in place, and
//! parsing allocates nothing once a stream's first structure has arrived.

/// Templates in a structure at most (the template id has 6 bits).
pub(crate) const MAX_TEMPLATES: usize = 64;
/// Decode targets in a structure at most (`dt_cnt_minus_one` has 5 bits).
pub(crate) const MAX_DECODE_TARGETS: usize = 32;
/// Spatial layers at most (AV1's limit).
pub(crate) const MAX_SPATIAL_LAYERS: usize = 4;
/// Temporal layers at most (AV1's limit).
pub(crate) const MAX_TEMPORAL_LAYERS: usize = 8;
/// Referred frames per frame kept at most; a descriptor with more is refused.
pub(crate) const MAX_FDIFFS: usize = 8;

/// What a frame means to one decode target (Table A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dti {
    /// The decode target does not use the frame.
    NotPresent,
    /// The decode target uses the frame; no later frame of it refers to it.
    Discardable,
    /// The decode target uses the frame, and a receiver that can decode it can decode every
    /// later frame of the target: a point to switch to the target.
    Switch,
    /// The decode target uses the frame and later frames refer to it.
    Required,
}

impl Dti {
    fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => Self::NotPresent,
            1 => Self::Discardable,
            2 => Self::Switch,
            _ => Self::Required,
        }
    }
}

/// Why a descriptor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DdError {
    /// Shorter than its fields.
    Truncated,
    /// No structure has arrived yet for the stream.
    NoStructure,
    /// The template id is outside the current structure (its structure was lost or late).
    UnknownTemplate,
    /// More templates, layers or referred frames than the limits above.
    Limit,
    /// A descriptor being written does not fit its buffer.
    NoRoom,
}

/// A coded video sequence's template dependency structure.
#[derive(Debug, Clone)]
pub(crate) struct Structure {
    template_id_offset: u8,
    decode_targets: u8,
    templates: u8,
    spatial: [u8; MAX_TEMPLATES],
    temporal: [u8; MAX_TEMPLATES],
    /// Each template's decode target indications, two bits per target (target 0 lowest).
    dtis: [u64; MAX_TEMPLATES],
    fdiff_counts: [u8; MAX_TEMPLATES],
    fdiffs: [[u8; MAX_FDIFFS]; MAX_TEMPLATES],
    chains: u8,
    protected_by: [u8; MAX_DECODE_TARGETS],
    chain_fdiffs: [[u8; MAX_DECODE_TARGETS]; MAX_TEMPLATES],
    /// Render resolution per spatial layer, when the structure gives them.
    resolutions: Option<[(u16, u16); MAX_SPATIAL_LAYERS]>,
    /// The highest spatial and temporal layer each decode target uses.
    target_spatial: [u8; MAX_DECODE_TARGETS],
    target_temporal: [u8; MAX_DECODE_TARGETS],
}

impl Default for Structure {
    fn default() -> Self {
        Self {
            template_id_offset: 0,
            decode_targets: 0,
            templates: 0,
            spatial: [0; MAX_TEMPLATES],
            temporal: [0; MAX_TEMPLATES],
            dtis: [0; MAX_TEMPLATES],
            fdiff_counts: [0; MAX_TEMPLATES],
            fdiffs: [[0; MAX_FDIFFS]; MAX_TEMPLATES],
            chains: 0,
            protected_by: [0; MAX_DECODE_TARGETS],
            chain_fdiffs: [[0; MAX_DECODE_TARGETS]; MAX_TEMPLATES],
            resolutions: None,
            target_spatial: [0; MAX_DECODE_TARGETS],
            target_temporal: [0; MAX_DECODE_TARGETS],
        }
    }
}

impl Structure {
    /// Number of decode targets.
    pub(crate) fn decode_targets(&self) -> u8 {
        self.decode_targets
    }

    #[cfg(test)] // Read by the tests; selection uses the layers alone.
    /// Number of chains (0: the structure uses none).
    pub(crate) fn chains(&self) -> u8 {
        self.chains
    }

    #[cfg(test)] // Read by the tests; selection uses the layers alone.
    /// The chain that protects decode target `dt`.
    pub(crate) fn protected_by(&self, dt: u8) -> Option<u8> {
        (self.chains > 0 && dt < self.decode_targets).then(|| self.protected_by[usize::from(dt)])
    }

    /// The index of the template a descriptor names by `template_id`, if the structure has it.
    fn template_index(&self, template_id: u8) -> Option<usize> {
        let index = (usize::from(template_id) + MAX_TEMPLATES
            - usize::from(self.template_id_offset))
            % MAX_TEMPLATES;
        (index < usize::from(self.templates)).then_some(index)
    }

    /// The spatial and temporal layer of the frame descriptor `data` belongs to, read from
    /// its template id alone (the structure it was written against must be this one).
    pub(crate) fn frame_layers(&self, data: &[u8]) -> Option<(u8, u8)> {
        let index = self.template_index(data.first()? & 0x3f)?;
        Some((self.spatial[index], self.temporal[index]))
    }

    /// The highest spatial and temporal layer decode target `dt` uses.
    pub(crate) fn target_layers(&self, dt: u8) -> Option<(u8, u8)> {
        (dt < self.decode_targets).then(|| {
            (
                self.target_spatial[usize::from(dt)],
                self.target_temporal[usize::from(dt)],
            )
        })
    }

    #[cfg(test)] // Read by the tests; selection uses the layers alone.
    /// The render resolution of spatial layer `spatial`, when the structure gives it.
    pub(crate) fn resolution(&self, spatial: u8) -> Option<(u16, u16)> {
        self.resolutions
            .and_then(|r| r.get(usize::from(spatial)).copied())
            .filter(|&(w, _)| w > 0)
    }

    #[cfg(test)] // Read by the tests; selection uses the layers alone.
    /// The best active decode target within spatial layer `spatial` and temporal layer
    /// `temporal`: the one with the highest spatial, then temporal layer (`None` when no
    /// active target fits).
    pub(crate) fn decode_target_within(
        &self,
        spatial: u8,
        temporal: u8,
        active: u32,
    ) -> Option<u8> {
        (0..self.decode_targets)
            .filter(|&dt| active >> dt & 1 == 1)
            .filter(|&dt| {
                let (s, t) = (
                    self.target_spatial[usize::from(dt)],
                    self.target_temporal[usize::from(dt)],
                );
                s <= spatial && t <= temporal
            })
            .max_by_key(|&dt| {
                (
                    self.target_spatial[usize::from(dt)],
                    self.target_temporal[usize::from(dt)],
                )
            })
    }

    /// Every decode target of the structure, as an active-decode-targets bitmask.
    pub(crate) fn all_targets(&self) -> u32 {
        if self.decode_targets >= 32 {
            u32::MAX
        } else {
            (1u32 << self.decode_targets) - 1
        }
    }
}

/// What one packet's descriptor says about its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameInfo {
    /// The packet starts a frame.
    pub(crate) start_of_frame: bool,
    /// The packet ends a frame.
    pub(crate) end_of_frame: bool,
    /// The frame's number (16 bits, wrapping, increasing in decode order).
    pub(crate) frame_number: u16,
    pub(crate) spatial_id: u8,
    pub(crate) temporal_id: u8,
    /// The frame's decode target indications, two bits per target.
    dtis: u64,
    fdiff_count: u8,
    fdiffs: [u16; MAX_FDIFFS],
    chain_count: u8,
    chain_fdiffs: [u8; MAX_DECODE_TARGETS],
    /// The active decode targets, when the descriptor says (a structure implies all of them).
    pub(crate) active_decode_targets: Option<u32>,
    /// The descriptor carried a new structure (the start of a coded video sequence).
    pub(crate) new_structure: bool,
}

impl FrameInfo {
    /// What the frame means to decode target `dt`.
    pub(crate) fn dti(&self, dt: u8) -> Dti {
        if usize::from(dt) >= MAX_DECODE_TARGETS {
            return Dti::NotPresent;
        }
        Dti::from_bits(self.dtis >> (2 * u32::from(dt)))
    }

    /// The frame numbers of the frames this one refers to.
    pub(crate) fn referred(&self) -> impl Iterator<Item = u16> + '_ {
        self.fdiffs[..usize::from(self.fdiff_count)]
            .iter()
            .map(|&d| self.frame_number.wrapping_sub(d))
    }

    #[cfg(test)] // Read by the tests; selection uses the layers alone.
    /// The frame number of the previous frame in chain `chain` (`None`: the chain needs no
    /// earlier frame, or there is no such chain).
    pub(crate) fn chain_previous(&self, chain: u8) -> Option<u16> {
        if chain >= self.chain_count {
            return None;
        }
        let d = self.chain_fdiffs[usize::from(chain)];
        (d != 0).then(|| self.frame_number.wrapping_sub(u16::from(d)))
    }
}

/// Parses one stream's descriptors, keeping its current structure.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    current: Option<Box<Structure>>,
    /// Where a new structure is parsed before it replaces the current one.
    scratch: Option<Box<Structure>>,
    /// The active decode targets the stream last said (a structure makes all of them active).
    active: u32,
}

impl Parser {
    /// The stream's current structure.
    pub(crate) fn structure(&self) -> Option<&Structure> {
        self.current.as_deref()
    }

    /// The active decode targets the stream last said (decode target `i` in bit `i`).
    pub(crate) fn active_decode_targets(&self) -> u32 {
        self.active
    }

    /// Parses one packet's descriptor (the header extension's bytes).
    pub(crate) fn parse(&mut self, data: &[u8]) -> Result<FrameInfo, DdError> {
        let mut r = Bits::new(data);
        let start_of_frame = r.bit()?;
        let end_of_frame = r.bit()?;
        let template_id = r.f(6)? as u8;
        let frame_number = r.f(16)? as u16;
        let (mut new_structure, mut active_present) = (false, false);
        let (mut custom_dtis, mut custom_fdiffs, mut custom_chains) = (false, false, false);
        if data.len() > 3 {
            new_structure = r.bit()?;
            active_present = r.bit()?;
            custom_dtis = r.bit()?;
            custom_fdiffs = r.bit()?;
            custom_chains = r.bit()?;
        }
        if new_structure {
            let scratch = self.scratch.get_or_insert_with(Box::default);
            read_structure(&mut r, scratch)?;
        }
        let s: &Structure = if new_structure {
            self.scratch.as_deref().ok_or(DdError::NoStructure)?
        } else {
            self.current.as_deref().ok_or(DdError::NoStructure)?
        };
        let mut active_decode_targets = new_structure.then(|| s.all_targets());
        if active_present {
            active_decode_targets = Some(r.f(u32::from(s.decode_targets))? as u32);
        }
        let index = s
            .template_index(template_id)
            .ok_or(DdError::UnknownTemplate)?;
        let mut frame = FrameInfo {
            start_of_frame,
            end_of_frame,
            frame_number,
            spatial_id: s.spatial[index],
            temporal_id: s.temporal[index],
            dtis: s.dtis[index],
            fdiff_count: s.fdiff_counts[index],
            fdiffs: s.fdiffs[index].map(u16::from),
            chain_count: s.chains,
            chain_fdiffs: s.chain_fdiffs[index],
            active_decode_targets,
            new_structure,
        };
        if custom_dtis {
            frame.dtis = 0;
            for dt in 0..u32::from(s.decode_targets) {
                frame.dtis |= r.f(2)? << (2 * dt);
            }
        }
        if custom_fdiffs {
            frame.fdiff_count = 0;
            loop {
                let size = r.f(2)? as u32;
                if size == 0 {
                    break;
                }
                let fdiff = r.f(4 * size)? as u16 + 1;
                let slot = frame
                    .fdiffs
                    .get_mut(usize::from(frame.fdiff_count))
                    .ok_or(DdError::Limit)?;
                *slot = fdiff;
                frame.fdiff_count += 1;
            }
        }
        if custom_chains {
            for c in 0..usize::from(s.chains) {
                frame.chain_fdiffs[c] = r.f(8)? as u8;
            }
        }
        if new_structure {
            std::mem::swap(&mut self.current, &mut self.scratch);
        }
        if let Some(active) = active_decode_targets {
            self.active = active;
        }
        Ok(frame)
    }
}

/// Reads a template dependency structure into `s` (which it overwrites).
fn read_structure(r: &mut Bits<'_>, s: &mut Structure) -> Result<(), DdError> {
    s.template_id_offset = r.f(6)? as u8;
    s.decode_targets = r.f(5)? as u8 + 1;
    let dts = usize::from(s.decode_targets);
    // Template layers.
    let (mut spatial, mut temporal, mut count) = (0u8, 0u8, 0usize);
    loop {
        if count == MAX_TEMPLATES {
            return Err(DdError::Limit);
        }
        s.spatial[count] = spatial;
        s.temporal[count] = temporal;
        count += 1;
        match r.f(2)? {
            1 => temporal += 1,
            2 => {
                temporal = 0;
                spatial += 1;
            }
            3 => break,
            _ => {}
        }
        if usize::from(spatial) >= MAX_SPATIAL_LAYERS
            || usize::from(temporal) >= MAX_TEMPORAL_LAYERS
        {
            return Err(DdError::Limit);
        }
    }
    s.templates = count as u8;
    let max_spatial = s.spatial[..count].iter().copied().max().unwrap_or(0);
    // Template decode target indications.
    for t in 0..count {
        s.dtis[t] = 0;
        for dt in 0..dts {
            s.dtis[t] |= r.f(2)? << (2 * dt);
        }
    }
    // Template referred frames.
    for t in 0..count {
        let mut n = 0usize;
        while r.bit()? {
            let fdiff = r.f(4)? as u8 + 1;
            *s.fdiffs[t].get_mut(n).ok_or(DdError::Limit)? = fdiff;
            n += 1;
        }
        s.fdiff_counts[t] = n as u8;
    }
    // Template chains.
    s.chains = r.ns(u32::from(s.decode_targets) + 1)? as u8;
    if s.chains > 0 {
        for dt in 0..dts {
            s.protected_by[dt] = r.ns(u32::from(s.chains))? as u8;
        }
        for t in 0..count {
            for c in 0..usize::from(s.chains) {
                s.chain_fdiffs[t][c] = r.f(4)? as u8;
            }
        }
    }
    // Decode target layers: the highest of the templates each target uses.
    for dt in 0..dts {
        let (mut sid, mut tid) = (0, 0);
        for t in 0..count {
            if s.dtis[t] >> (2 * dt) & 3 != 0 {
                sid = sid.max(s.spatial[t]);
                tid = tid.max(s.temporal[t]);
            }
        }
        s.target_spatial[dt] = sid;
        s.target_temporal[dt] = tid;
    }
    s.resolutions = None;
    if r.bit()? {
        let mut res = [(0u16, 0u16); MAX_SPATIAL_LAYERS];
        for slot in res.iter_mut().take(usize::from(max_spatial) + 1) {
            let w = r.f(16)? as u16;
            let h = r.f(16)? as u16;
            *slot = (w.saturating_add(1), h.saturating_add(1));
        }
        s.resolutions = Some(res);
    }
    Ok(())
}

/// Reads bits high to low.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool, DdError> {
        let byte = self.data.get(self.pos / 8).ok_or(DdError::Truncated)?;
        let v = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(v == 1)
    }

    /// An unsigned `n`-bit number (`n` ≤ 64).
    fn f(&mut self, n: u32) -> Result<u64, DdError> {
        let mut x = 0u64;
        for _ in 0..n {
            x = x << 1 | u64::from(self.bit()?);
        }
        Ok(x)
    }

    /// A non-symmetric unsigned number below `n`.
    fn ns(&mut self, n: u32) -> Result<u64, DdError> {
        let w = 32 - n.leading_zeros();
        let m = (1u64 << w) - u64::from(n);
        let v = self.f(w.saturating_sub(1))?;
        if v < m {
            return Ok(v);
        }
        let extra = u64::from(self.bit()?);
        Ok((v << 1) - m + extra)
    }
}

pub(crate) mod write;

#[cfg(test)]
pub(crate) mod tests;
