//! The dependency descriptor (the AV1 RTP payload format's Appendix A), written and read for
//! the simulations: the synthetic AV1 sources write it for every packet, and the tests read
//! what a consumer received to check that every frame it got is decodable.
//!
//! [`Descriptor::write`] writes the mandatory fields, the extended fields and the template
//! dependency structure bit by bit as the specification's syntax tables order them;
//! [`Reader`] reads them back, keeping the stream's current structure as a receiver does.

/// What a frame means to one decode target (the specification's Table A.1), as its two bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dti {
    /// `-`: the decode target does not use the frame.
    NotPresent = 0,
    /// `D`: the decode target uses the frame; no later frame of it refers to it.
    Discardable = 1,
    /// `S`: a point to switch to the decode target.
    Switch = 2,
    /// `R`: the decode target uses the frame and later frames of it refer to it.
    Required = 3,
}

impl Dti {
    /// The indications `-`, `D`, `S` and `R` of a string, one per decode target (anything
    /// else reads as `-`).
    pub fn list(s: &str) -> Vec<Dti> {
        s.chars()
            .map(|c| match c {
                'D' => Dti::Discardable,
                'S' => Dti::Switch,
                'R' => Dti::Required,
                _ => Dti::NotPresent,
            })
            .collect()
    }

    fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => Dti::NotPresent,
            1 => Dti::Discardable,
            2 => Dti::Switch,
            _ => Dti::Required,
        }
    }
}

/// One template of a structure: a frame's layers, decode target indications, referred frames
/// and chain differences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Spatial layer.
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// One indication per decode target.
    pub dtis: Vec<Dti>,
    /// How many frames back each referred frame is (1 to 16).
    pub fdiffs: Vec<u16>,
    /// Per chain, how many frames back the chain's previous frame is (0: none; up to 15).
    pub chain_fdiffs: Vec<u8>,
}

impl Template {
    /// A template of layers (`spatial`, `temporal`), indications `dtis` (see [`Dti::list`]),
    /// referred frames `fdiffs` and chain differences `chains`.
    pub fn new(spatial: u8, temporal: u8, dtis: &str, fdiffs: &[u16], chains: &[u8]) -> Self {
        Self {
            spatial,
            temporal,
            dtis: Dti::list(dtis),
            fdiffs: fdiffs.to_vec(),
            chain_fdiffs: chains.to_vec(),
        }
    }
}

/// A template dependency structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    /// The template id of the first template.
    pub template_id_offset: u8,
    /// Number of decode targets (1 to 32).
    pub decode_targets: u8,
    /// The templates, in order of spatial and then temporal layer (each next template is of
    /// the same layers, the next temporal layer, or temporal layer 0 of the next spatial
    /// layer: what the syntax can say).
    pub templates: Vec<Template>,
    /// Number of chains (0 to `decode_targets`).
    pub chains: u8,
    /// The chain that protects each decode target (when there are chains).
    pub protected_by: Vec<u8>,
    /// Render resolution (width, height) per spatial layer, if given.
    pub resolutions: Option<Vec<(u16, u16)>>,
}

impl Structure {
    /// The highest spatial and temporal layer decode target `dt` uses.
    pub fn target_layers(&self, dt: usize) -> (u8, u8) {
        self.templates
            .iter()
            .filter(|t| t.dtis.get(dt).is_some_and(|&d| d != Dti::NotPresent))
            .fold((0, 0), |(s, t), x| (s.max(x.spatial), t.max(x.temporal)))
    }

    /// The index of the template `template_id` names.
    fn index(&self, template_id: u8) -> usize {
        (usize::from(template_id) + 64 - usize::from(self.template_id_offset)) % 64
    }
}

/// One packet's dependency descriptor, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The packet starts a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// The template id (the template's index plus the structure's offset, modulo 64).
    pub template_id: u8,
    /// The frame number.
    pub frame_number: u16,
    /// The structure, when this packet carries it.
    pub structure: Option<Structure>,
    /// The active decode targets, when this packet says.
    pub active_decode_targets: Option<u32>,
    /// Indications overriding the template's.
    pub custom_dtis: Option<Vec<Dti>>,
    /// Referred frames overriding the template's (each 1 to 4096 back).
    pub custom_fdiffs: Option<Vec<u16>>,
    /// Chain differences overriding the template's.
    pub custom_chains: Option<Vec<u8>>,
}

impl Descriptor {
    /// A descriptor of only the mandatory fields.
    pub fn new(start: bool, end: bool, template_id: u8, frame_number: u16) -> Self {
        Self {
            start_of_frame: start,
            end_of_frame: end,
            template_id,
            frame_number,
            structure: None,
            active_decode_targets: None,
            custom_dtis: None,
            custom_fdiffs: None,
            custom_chains: None,
        }
    }

    /// The header extension's bytes. `current` is the stream's structure, which sizes the
    /// fields that depend on it (the one carried here takes its place).
    pub fn write(&self, current: &Structure) -> Vec<u8> {
        let mut b = BitWriter::default();
        b.f(1, u64::from(self.start_of_frame));
        b.f(1, u64::from(self.end_of_frame));
        b.f(6, u64::from(self.template_id));
        b.f(16, u64::from(self.frame_number));
        let extended = self.structure.is_some()
            || self.active_decode_targets.is_some()
            || self.custom_dtis.is_some()
            || self.custom_fdiffs.is_some()
            || self.custom_chains.is_some();
        if !extended {
            return b.bytes;
        }
        b.f(1, u64::from(self.structure.is_some()));
        b.f(1, u64::from(self.active_decode_targets.is_some()));
        b.f(1, u64::from(self.custom_dtis.is_some()));
        b.f(1, u64::from(self.custom_fdiffs.is_some()));
        b.f(1, u64::from(self.custom_chains.is_some()));
        let s = self.structure.as_ref().unwrap_or(current);
        if let Some(s) = &self.structure {
            write_structure(&mut b, s);
        }
        if let Some(active) = self.active_decode_targets {
            b.f(u32::from(s.decode_targets), u64::from(active));
        }
        if let Some(dtis) = &self.custom_dtis {
            for &d in dtis {
                b.f(2, d as u64);
            }
        }
        if let Some(fdiffs) = &self.custom_fdiffs {
            for &d in fdiffs {
                let v = u64::from(d.clamp(1, 1 << 12) - 1);
                let size = match v {
                    0..=0xf => 1,
                    0x10..=0xff => 2,
                    _ => 3,
                };
                b.f(2, size);
                b.f(4 * size as u32, v);
            }
            b.f(2, 0);
        }
        if let Some(chains) = &self.custom_chains {
            for &c in chains {
                b.f(8, u64::from(c));
            }
        }
        b.bytes
    }
}

fn write_structure(b: &mut BitWriter, s: &Structure) {
    b.f(6, u64::from(s.template_id_offset));
    b.f(5, u64::from(s.decode_targets.clamp(1, 32) - 1));
    // Template layers: how each next template's layers follow from the one before.
    for (i, t) in s.templates.iter().enumerate() {
        let next_layer_idc = match s.templates.get(i + 1) {
            None => 3,
            Some(n) if n.spatial == t.spatial && n.temporal == t.temporal => 0,
            Some(n) if n.spatial == t.spatial => 1,
            Some(_) => 2,
        };
        b.f(2, next_layer_idc);
    }
    for t in &s.templates {
        for dt in 0..usize::from(s.decode_targets) {
            b.f(2, t.dtis.get(dt).map_or(0, |&d| d as u64));
        }
    }
    for t in &s.templates {
        for &d in &t.fdiffs {
            b.f(1, 1);
            b.f(4, u64::from(d.clamp(1, 16) - 1));
        }
        b.f(1, 0);
    }
    b.ns(u32::from(s.decode_targets) + 1, u64::from(s.chains));
    if s.chains > 0 {
        for dt in 0..usize::from(s.decode_targets) {
            let chain = s.protected_by.get(dt).copied().unwrap_or(0);
            b.ns(u32::from(s.chains), u64::from(chain));
        }
        for t in &s.templates {
            for c in 0..usize::from(s.chains) {
                b.f(4, u64::from(t.chain_fdiffs.get(c).copied().unwrap_or(0)));
            }
        }
    }
    b.f(1, u64::from(s.resolutions.is_some()));
    if let Some(res) = &s.resolutions {
        let layers = s.templates.iter().map(|t| t.spatial).max().unwrap_or(0);
        for sid in 0..=usize::from(layers) {
            let (w, h) = res.get(sid).copied().unwrap_or((1, 1));
            b.f(16, u64::from(w.max(1) - 1));
            b.f(16, u64::from(h.max(1) - 1));
        }
    }
}

/// Writes bits high to low.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    len: usize,
}

impl BitWriter {
    /// `v`'s low `n` bits.
    fn f(&mut self, n: u32, v: u64) {
        for i in (0..n).rev() {
            if self.len % 8 == 0 {
                self.bytes.push(0);
            }
            if v >> i & 1 == 1 {
                if let Some(last) = self.bytes.last_mut() {
                    *last |= 0x80 >> (self.len % 8);
                }
            }
            self.len += 1;
        }
    }

    /// `v` (below `n`) as a non-symmetric unsigned number: `w - 1` bits for the `m` smallest
    /// values, `w` bits for the others, where `w` is `n`'s bit length and `m` is `2^w - n`.
    fn ns(&mut self, n: u32, v: u64) {
        let w = 32 - n.leading_zeros();
        let m = (1u64 << w) - u64::from(n);
        if v < m {
            self.f(w - 1, v);
        } else {
            let x = v + m;
            self.f(w - 1, x >> 1);
            self.f(1, x & 1);
        }
    }
}

/// What one packet's descriptor says, with the template's fields resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The packet starts a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// The frame number.
    pub frame_number: u16,
    /// The template id.
    pub template_id: u8,
    /// Spatial layer.
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// One indication per decode target.
    pub dtis: Vec<Dti>,
    /// The frame numbers of the frames it refers to.
    pub referred: Vec<u16>,
    /// Per chain, how many frames back the chain's previous frame is (0: none).
    pub chain_fdiffs: Vec<u8>,
    /// The packet carried a structure (it starts a coded video sequence).
    pub new_structure: bool,
    /// The active decode targets, when the descriptor says (a structure: all of them).
    pub active_decode_targets: Option<u32>,
}

/// Why a descriptor did not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Shorter than its fields.
    Truncated,
    /// No structure yet.
    NoStructure,
    /// The template id names no template of the structure.
    UnknownTemplate,
    /// Layers out of AV1's range (4 spatial, 8 temporal) or more than 64 templates.
    Limit,
}

/// Reads one stream's descriptors, keeping its current structure.
#[derive(Debug, Default, Clone)]
pub struct Reader {
    structure: Option<Structure>,
}

impl Reader {
    /// The current structure.
    pub fn structure(&self) -> Option<&Structure> {
        self.structure.as_ref()
    }

    /// Reads one packet's descriptor; a structure it carries becomes the current one.
    pub fn read(&mut self, data: &[u8]) -> Result<Frame, ReadError> {
        let mut r = BitReader { data, pos: 0 };
        let start_of_frame = r.f(1)? == 1;
        let end_of_frame = r.f(1)? == 1;
        let template_id = r.f(6)? as u8;
        let frame_number = r.f(16)? as u16;
        let mut flags = [false; 5];
        if data.len() > 3 {
            for f in &mut flags {
                *f = r.f(1)? == 1;
            }
        }
        let [has_structure, has_active, custom_dtis, custom_fdiffs, custom_chains] = flags;
        if has_structure {
            self.structure = Some(read_structure(&mut r)?);
        }
        let s = self.structure.as_ref().ok_or(ReadError::NoStructure)?;
        let mut active = has_structure
            .then(|| u32::try_from((1u64 << s.decode_targets) - 1).unwrap_or(u32::MAX));
        if has_active {
            active = Some(r.f(u32::from(s.decode_targets))? as u32);
        }
        let t = s
            .templates
            .get(s.index(template_id))
            .ok_or(ReadError::UnknownTemplate)?;
        let mut frame = Frame {
            start_of_frame,
            end_of_frame,
            frame_number,
            template_id,
            spatial: t.spatial,
            temporal: t.temporal,
            dtis: t.dtis.clone(),
            referred: t
                .fdiffs
                .iter()
                .map(|&d| frame_number.wrapping_sub(d))
                .collect(),
            chain_fdiffs: t.chain_fdiffs.clone(),
            new_structure: has_structure,
            active_decode_targets: active,
        };
        if custom_dtis {
            frame.dtis = (0..s.decode_targets)
                .map(|_| r.f(2).map(Dti::from_bits))
                .collect::<Result<_, _>>()?;
        }
        if custom_fdiffs {
            frame.referred.clear();
            loop {
                let size = r.f(2)? as u32;
                if size == 0 {
                    break;
                }
                let fdiff = r.f(4 * size)? + 1;
                frame.referred.push(frame_number.wrapping_sub(fdiff as u16));
            }
        }
        if custom_chains {
            frame.chain_fdiffs = (0..s.chains)
                .map(|_| r.f(8).map(|v| v as u8))
                .collect::<Result<_, _>>()?;
        }
        Ok(frame)
    }
}

fn read_structure(r: &mut BitReader<'_>) -> Result<Structure, ReadError> {
    let template_id_offset = r.f(6)? as u8;
    let decode_targets = r.f(5)? as u8 + 1;
    let dts = usize::from(decode_targets);
    let mut templates = Vec::new();
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        if templates.len() == 64 || spatial > 3 || temporal > 7 {
            return Err(ReadError::Limit);
        }
        templates.push(Template {
            spatial,
            temporal,
            dtis: Vec::new(),
            fdiffs: Vec::new(),
            chain_fdiffs: Vec::new(),
        });
        match r.f(2)? {
            1 => temporal += 1,
            2 => (spatial, temporal) = (spatial + 1, 0),
            3 => break,
            _ => {}
        }
    }
    for t in &mut templates {
        t.dtis = (0..dts)
            .map(|_| r.f(2).map(Dti::from_bits))
            .collect::<Result<_, _>>()?;
    }
    for t in &mut templates {
        while r.f(1)? == 1 {
            t.fdiffs.push(r.f(4)? as u16 + 1);
        }
    }
    let chains = r.ns(u32::from(decode_targets) + 1)? as u8;
    let mut protected_by = Vec::new();
    if chains > 0 {
        for _ in 0..dts {
            protected_by.push(r.ns(u32::from(chains))? as u8);
        }
        for t in &mut templates {
            t.chain_fdiffs = (0..chains)
                .map(|_| r.f(4).map(|v| v as u8))
                .collect::<Result<_, _>>()?;
        }
    }
    let mut resolutions = None;
    if r.f(1)? == 1 {
        let layers = templates.iter().map(|t| t.spatial).max().unwrap_or(0);
        let mut res = Vec::new();
        for _ in 0..=layers {
            let w = r.f(16)? as u16;
            let h = r.f(16)? as u16;
            res.push((w.wrapping_add(1), h.wrapping_add(1)));
        }
        resolutions = Some(res);
    }
    Ok(Structure {
        template_id_offset,
        decode_targets,
        templates,
        chains,
        protected_by,
        resolutions,
    })
}

/// Reads bits high to low.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn f(&mut self, n: u32) -> Result<u64, ReadError> {
        let mut x = 0u64;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8).ok_or(ReadError::Truncated)?;
            x = x << 1 | u64::from(byte >> (7 - self.pos % 8) & 1);
            self.pos += 1;
        }
        Ok(x)
    }

    fn ns(&mut self, n: u32) -> Result<u64, ReadError> {
        let w = 32 - n.leading_zeros();
        let m = (1u64 << w) - u64::from(n);
        let v = self.f(w - 1)?;
        if v < m {
            return Ok(v);
        }
        Ok((v << 1) - m + self.f(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `L1T3` structure: a key frame, then T0, T1 and T2 frames; decode targets T0, T0+T1
    /// and all; one chain.
    fn l1t3() -> Structure {
        Structure {
            template_id_offset: 0,
            decode_targets: 3,
            templates: vec![
                Template::new(0, 0, "SSS", &[], &[0]),
                Template::new(0, 0, "SSS", &[4], &[4]),
                Template::new(0, 1, "-DR", &[2], &[2]),
                Template::new(0, 2, "--D", &[1], &[1]),
                Template::new(0, 2, "--D", &[1], &[3]),
            ],
            chains: 1,
            protected_by: vec![0, 0, 0],
            resolutions: None,
        }
    }

    #[test]
    fn an_l1t3_key_frame_has_the_bits_worked_out_by_hand() {
        // Start and end, template 0, frame 100; structure present; offset 0, three targets;
        // layer steps 0 1 1 0 3; the indications; fdiffs 4, 2, 1, 1; one chain ("01"),
        // targets protected by it (no bits), the chain differences; no resolutions.
        let mut s = l1t3();
        s.templates.truncate(4);
        let mut d = Descriptor::new(true, true, 0, 100);
        d.structure = Some(s.clone());
        assert_eq!(
            d.write(&s),
            [0xC0, 0x00, 0x64, 0x80, 0x02, 0x17, 0xAA, 0xA1, 0xC1, 0x4D, 0x14, 0x08, 0x21, 0x08]
        );
    }

    #[test]
    fn what_is_written_reads_back() {
        let s = l1t3();
        let mut key = Descriptor::new(true, false, 0, 65535);
        key.structure = Some(s.clone());
        let mut r = Reader::default();
        assert_eq!(r.read(&[0x80, 0, 1]), Err(ReadError::NoStructure));
        let f = r.read(&key.write(&s)).unwrap();
        assert_eq!(r.structure(), Some(&s));
        assert!(f.new_structure && f.start_of_frame && !f.end_of_frame);
        assert_eq!(f.active_decode_targets, Some(0b111));
        let plain = Descriptor::new(false, true, 2, 1);
        let bytes = plain.write(&s);
        assert_eq!(bytes.len(), 3, "mandatory fields only");
        let f = r.read(&bytes).unwrap();
        assert_eq!(
            (f.spatial, f.temporal, f.referred.clone()),
            (0, 1, vec![65535])
        );
        assert_eq!(f.dtis, Dti::list("-DR"));
        // Every extended field at once.
        let mut custom = Descriptor::new(true, true, 4, 7);
        custom.active_decode_targets = Some(0b011);
        custom.custom_dtis = Some(Dti::list("RSD"));
        custom.custom_fdiffs = Some(vec![1, 17, 300, 4096]);
        custom.custom_chains = Some(vec![200]);
        let f = r.read(&custom.write(&s)).unwrap();
        assert_eq!(f.active_decode_targets, Some(0b011));
        assert_eq!(f.dtis, Dti::list("RSD"));
        assert_eq!(f.referred, vec![6, 65526, 65243, 61447]);
        assert_eq!(f.chain_fdiffs, vec![200]);
        assert_eq!(r.read(&[0x85, 0, 1]), Err(ReadError::UnknownTemplate));
        // A structure with an offset, many targets, several chains and resolutions.
        let mut big = Structure {
            template_id_offset: 60,
            decode_targets: 9,
            templates: vec![
                Template::new(0, 0, "SSSSSSSSS", &[], &[0, 0, 0]),
                Template::new(1, 0, "---SSSRRR", &[1], &[1, 1, 1]),
                Template::new(1, 1, "----DR---", &[16], &[15, 3, 0]),
                Template::new(2, 0, "------SSS", &[1], &[2, 1, 1]),
            ],
            chains: 3,
            protected_by: vec![0, 0, 0, 1, 1, 1, 2, 2, 2],
            resolutions: Some(vec![(320, 180), (640, 360), (1280, 720)]),
        };
        let mut d = Descriptor::new(true, true, 61, 9);
        d.structure = Some(big.clone());
        let f = r.read(&d.write(&s)).unwrap();
        assert_eq!(r.structure(), Some(&big));
        assert_eq!((f.spatial, f.referred.clone()), (1, vec![8]));
        assert_eq!(big.target_layers(4), (1, 1));
        let f = r
            .read(&Descriptor::new(true, true, 63, 20).write(&big))
            .unwrap();
        assert_eq!(f.chain_fdiffs, vec![2, 1, 1]);
        // The chain counts that need the longer ns() codes.
        for chains in 0..=9 {
            big.chains = chains;
            big.protected_by = match chains {
                0 => Vec::new(),
                _ => (0..9).map(|dt| dt % chains).collect(),
            };
            for t in &mut big.templates {
                t.chain_fdiffs = (0..chains).collect();
            }
            let mut d = Descriptor::new(true, true, 60, 1);
            d.structure = Some(big.clone());
            let mut r = Reader::default();
            r.read(&d.write(&big)).unwrap();
            assert_eq!(r.structure(), Some(&big), "{chains} chains");
        }
    }

    #[test]
    fn truncations_are_refused_not_panicked_on() {
        let s = l1t3();
        let mut d = Descriptor::new(true, true, 0, 1);
        d.structure = Some(s.clone());
        let bytes = d.write(&s);
        for cut in 0..bytes.len() {
            let _ = Reader::default().read(&bytes[..cut]);
        }
    }
}
