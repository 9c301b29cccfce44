//! A minimal CLAP host, enough to drive Cadenza the way a DAW does: load the
//! `.clap`, create an instance, read its parameters and ports, activate it,
//! run process blocks on a separate audio thread with a moving transport,
//! note and parameter events in and note events out, and save and load state.
//!
//! The plugin's process() runs under assert_no_alloc in debug builds, and our
//! event callbacks run inside it: they must not allocate either, so the
//! output list is preallocated and the input list is built before the call.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clap_sys::audio_buffer::clap_audio_buffer;
use clap_sys::entry::clap_plugin_entry;
use clap_sys::events::*;
use clap_sys::ext::note_ports::{clap_note_port_info, clap_plugin_note_ports, CLAP_EXT_NOTE_PORTS};
use clap_sys::ext::params::{clap_param_info, clap_plugin_params, CLAP_EXT_PARAMS};
use clap_sys::ext::state::{clap_plugin_state, CLAP_EXT_STATE};
use clap_sys::factory::plugin_factory::{clap_plugin_factory, CLAP_PLUGIN_FACTORY_ID};
use clap_sys::fixedpoint::{CLAP_BEATTIME_FACTOR, CLAP_SECTIME_FACTOR};
use clap_sys::host::clap_host;
use clap_sys::plugin::clap_plugin;
use clap_sys::process::{clap_process, CLAP_PROCESS_ERROR};
use clap_sys::stream::{clap_istream, clap_ostream};
use clap_sys::version::CLAP_VERSION;

/// Most output events one block may carry (the host's side of the buffer).
pub const MAX_OUT_EVENTS: usize = 4096;

/// nice-plug's parameter hash: what a CLAP host sees as the id of `#[id = "..."]`.
pub fn param_hash(id: &str) -> u32 {
    let mut hash: u32 = 0;
    for b in id.bytes() {
        hash = hash.wrapping_mul(31).wrapping_add(u32::from(b));
    }
    hash & !(1 << 31)
}

/// A loaded `.clap` file.
pub struct ClapLibrary {
    _lib: libloading::Library,
    entry: *const clap_plugin_entry,
}

/// One parameter as the host lists it.
#[derive(Debug, Clone)]
pub struct ParamInfo {
    pub id: u32,
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub automatable: bool,
}

/// A note the plugin sent, with its absolute sample time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutNote {
    /// Samples since the host started processing.
    pub sample: u64,
    pub channel: i16,
    pub key: i16,
    /// 0 for a note-off.
    pub velocity: f64,
}

/// Events for the next block.
#[derive(Debug, Clone, Copy)]
pub enum InEvent {
    Note { time: u32, key: i16, velocity: f64, on: bool },
    Param { time: u32, id: u32, value: f64 },
}

/// Where the host's transport is.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    pub playing: bool,
    pub tempo_bpm: f64,
    pub beats: f64,
    pub tsig: (u16, u16),
}

#[repr(C)]
enum RawEvent {
    Note(clap_event_note),
    Param(clap_event_param_value),
}

impl RawEvent {
    fn header(&self) -> *const clap_event_header {
        match self {
            RawEvent::Note(n) => &n.header,
            RawEvent::Param(p) => &p.header,
        }
    }
}

struct HostData {
    callback_requested: AtomicBool,
}

struct OutList {
    notes: Vec<OutNote>,
    block_start: u64,
    overflow: bool,
}

impl ClapLibrary {
    pub fn load(path: &Path) -> Result<Self, String> {
        // SAFETY: loading a plugin runs its initialisers; that is what we test.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("{}: {e}", path.display()))?;
        let entry = unsafe {
            let sym: libloading::Symbol<*const clap_plugin_entry> =
                lib.get(b"clap_entry\0").map_err(|e| format!("{}: no clap_entry: {e}", path.display()))?;
            *sym
        };
        let cpath = CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        let ok = unsafe { ((*entry).init.ok_or("no init")?)(cpath.as_ptr()) };
        if !ok {
            return Err("clap_entry.init returned false".into());
        }
        Ok(Self { _lib: lib, entry })
    }

    fn factory(&self) -> *const clap_plugin_factory {
        unsafe { ((*self.entry).get_factory.expect("get_factory"))(CLAP_PLUGIN_FACTORY_ID.as_ptr()) as *const _ }
    }

    /// (id, name, features) of every plugin in the file.
    pub fn descriptors(&self) -> Vec<(String, String, Vec<String>)> {
        let f = self.factory();
        let mut out = Vec::new();
        unsafe {
            let count = ((*f).get_plugin_count.expect("count"))(f);
            for i in 0..count {
                let d = ((*f).get_plugin_descriptor.expect("desc"))(f, i);
                let mut features = Vec::new();
                let mut p = (*d).features;
                while !p.is_null() && !(*p).is_null() {
                    features.push(cstr(*p));
                    p = p.add(1);
                }
                out.push((cstr((*d).id), cstr((*d).name), features));
            }
        }
        out
    }

    pub fn instantiate(&self, id: &str) -> Result<Instance, String> {
        let host_data = Box::new(HostData { callback_requested: AtomicBool::new(false) });
        let host = Box::new(clap_host {
            clap_version: CLAP_VERSION,
            host_data: &*host_data as *const HostData as *mut c_void,
            name: c"cadenza-test-host".as_ptr(),
            vendor: c"cadenza".as_ptr(),
            url: c"".as_ptr(),
            version: c"1".as_ptr(),
            get_extension: Some(host_get_extension),
            request_restart: Some(host_noop),
            request_process: Some(host_noop),
            request_callback: Some(host_request_callback),
        });
        let cid = CString::new(id).map_err(|e| e.to_string())?;
        let f = self.factory();
        let plugin = unsafe { ((*f).create_plugin.ok_or("no create_plugin")?)(f, &*host, cid.as_ptr()) };
        if plugin.is_null() {
            return Err(format!("create_plugin({id}) returned null"));
        }
        if !unsafe { ((*plugin).init.ok_or("no init")?)(plugin) } {
            return Err("plugin init failed".into());
        }
        let ext = |name: &CStr| unsafe { ((*plugin).get_extension.expect("get_extension"))(plugin, name.as_ptr()) };
        Ok(Instance {
            plugin,
            params: ext(CLAP_EXT_PARAMS) as *const clap_plugin_params,
            state: ext(CLAP_EXT_STATE) as *const clap_plugin_state,
            note_ports: ext(CLAP_EXT_NOTE_PORTS) as *const clap_plugin_note_ports,
            _host: host,
            host_data,
            active: false,
            processing: false,
            steady_time: 0,
            block_us: Vec::new(),
            block_peak: Vec::new(),
            sample_rate: 48_000.0,
        })
    }
}

impl Drop for ClapLibrary {
    fn drop(&mut self) {
        unsafe {
            if let Some(deinit) = (*self.entry).deinit {
                deinit();
            }
        }
    }
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

unsafe extern "C" fn host_get_extension(_host: *const clap_host, _id: *const c_char) -> *const c_void {
    std::ptr::null()
}
unsafe extern "C" fn host_noop(_host: *const clap_host) {}
unsafe extern "C" fn host_request_callback(host: *const clap_host) {
    let data = unsafe { &*((*host).host_data as *const HostData) };
    data.callback_requested.store(true, Ordering::Release);
}

unsafe extern "C" fn in_size(list: *const clap_input_events) -> u32 {
    let events = unsafe { &*((*list).ctx as *const Vec<RawEvent>) };
    events.len() as u32
}
unsafe extern "C" fn in_get(list: *const clap_input_events, index: u32) -> *const clap_event_header {
    let events = unsafe { &*((*list).ctx as *const Vec<RawEvent>) };
    events.get(index as usize).map_or(std::ptr::null(), RawEvent::header)
}
unsafe extern "C" fn out_try_push(list: *const clap_output_events, event: *const clap_event_header) -> bool {
    let out = unsafe { &mut *((*list).ctx as *mut OutList) };
    let header = unsafe { &*event };
    if header.space_id != CLAP_CORE_EVENT_SPACE_ID {
        return true;
    }
    if out.notes.len() >= MAX_OUT_EVENTS {
        out.overflow = true;
        return false;
    }
    match header.type_ {
        CLAP_EVENT_NOTE_ON | CLAP_EVENT_NOTE_OFF => {
            let n = unsafe { &*(event as *const clap_event_note) };
            let velocity = if header.type_ == CLAP_EVENT_NOTE_ON { n.velocity } else { 0.0 };
            out.notes.push(OutNote {
                sample: out.block_start + u64::from(header.time),
                channel: n.channel,
                key: n.key,
                velocity,
            });
        }
        CLAP_EVENT_MIDI => {
            let m = unsafe { &*(event as *const clap_event_midi) };
            let status = m.data[0] & 0xf0;
            if status == 0x90 || status == 0x80 {
                let velocity = if status == 0x90 { f64::from(m.data[2]) / 127.0 } else { 0.0 };
                out.notes.push(OutNote {
                    sample: out.block_start + u64::from(header.time),
                    channel: i16::from(m.data[0] & 0x0f),
                    key: i16::from(m.data[1]),
                    velocity,
                });
            }
        }
        _ => {}
    }
    true
}

unsafe extern "C" fn ostream_write(stream: *const clap_ostream, buffer: *const c_void, size: u64) -> i64 {
    let out = unsafe { &mut *((*stream).ctx as *mut Vec<u8>) };
    let bytes = unsafe { std::slice::from_raw_parts(buffer as *const u8, size as usize) };
    out.extend_from_slice(bytes);
    size as i64
}
unsafe extern "C" fn istream_read(stream: *const clap_istream, buffer: *mut c_void, size: u64) -> i64 {
    let src = unsafe { &mut *((*stream).ctx as *mut (Vec<u8>, usize)) };
    let n = (src.0.len() - src.1).min(size as usize);
    unsafe { std::ptr::copy_nonoverlapping(src.0[src.1..].as_ptr(), buffer as *mut u8, n) };
    src.1 += n;
    n as i64
}

/// One plugin instance.
pub struct Instance {
    plugin: *const clap_plugin,
    params: *const clap_plugin_params,
    state: *const clap_plugin_state,
    note_ports: *const clap_plugin_note_ports,
    _host: Box<clap_host>,
    host_data: Box<HostData>,
    active: bool,
    processing: bool,
    /// Samples processed so far.
    pub steady_time: u64,
    /// Wall time of each process() call of the last batch, in microseconds.
    pub block_us: Vec<f64>,
    /// Peak absolute sample of each block of the last batch (both channels).
    pub block_peak: Vec<f32>,
    pub sample_rate: f64,
}

/// The instance's pointer, sent to the audio thread for the length of a batch.
struct SendPtr(*const clap_plugin);
unsafe impl Send for SendPtr {}

impl Instance {
    pub fn params(&self) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        unsafe {
            let p = &*self.params;
            for i in 0..(p.count.expect("count"))(self.plugin) {
                let mut info: clap_param_info = std::mem::zeroed();
                if (p.get_info.expect("get_info"))(self.plugin, i, &mut info) {
                    out.push(ParamInfo {
                        id: info.id,
                        name: cstr(info.name.as_ptr()),
                        min: info.min_value,
                        max: info.max_value,
                        default: info.default_value,
                        automatable: info.flags & clap_sys::ext::params::CLAP_PARAM_IS_AUTOMATABLE != 0,
                    });
                }
            }
        }
        out
    }

    pub fn param_value(&self, id: u32) -> Option<f64> {
        let mut v = 0.0;
        unsafe { ((*self.params).get_value.expect("get_value"))(self.plugin, id, &mut v) }.then_some(v)
    }

    /// The plugin's text for `value` of parameter `id` (`params.value_to_text`).
    pub fn value_to_text(&self, id: u32, value: f64) -> Option<String> {
        let mut buf = [0 as c_char; 256];
        let ok = unsafe {
            ((*self.params).value_to_text.expect("value_to_text"))(self.plugin, id, value, buf.as_mut_ptr(), 256)
        };
        ok.then(|| cstr(buf.as_ptr()))
    }

    /// The value the plugin reads from `text` for parameter `id` (`params.text_to_value`).
    pub fn text_to_value(&self, id: u32, text: &str) -> Option<f64> {
        let text = CString::new(text).ok()?;
        let mut v = 0.0;
        unsafe { ((*self.params).text_to_value.expect("text_to_value"))(self.plugin, id, text.as_ptr(), &mut v) }
            .then_some(v)
    }

    /// (inputs, outputs) note ports.
    pub fn note_ports(&self) -> (u32, u32) {
        if self.note_ports.is_null() {
            return (0, 0);
        }
        unsafe {
            let np = &*self.note_ports;
            let count = np.count.expect("count");
            let mut info: clap_note_port_info = std::mem::zeroed();
            let ins = count(self.plugin, true);
            if ins > 0 {
                assert!((np.get.expect("get"))(self.plugin, 0, true, &mut info));
            }
            (ins, count(self.plugin, false))
        }
    }

    pub fn activate(&mut self, sample_rate: f64, max_frames: u32) {
        self.sample_rate = sample_rate;
        unsafe {
            assert!(((*self.plugin).activate.expect("activate"))(self.plugin, sample_rate, 1, max_frames), "activate");
        }
        self.active = true;
    }

    /// Run the main-thread callback the plugin asked for, if it asked.
    pub fn pump_main_thread(&self) {
        if self.host_data.callback_requested.swap(false, Ordering::AcqRel) {
            unsafe { ((*self.plugin).on_main_thread.expect("on_main_thread"))(self.plugin) };
        }
    }

    /// Process `blocks` blocks of `frames` samples on an audio thread. `events(block)` gives the
    /// input of each block, `transport(block)` its transport. Returns the notes sent out.
    pub fn process_blocks(
        &mut self,
        blocks: usize,
        frames: u32,
        mut events: impl FnMut(usize) -> Vec<InEvent> + Send,
        mut transport: impl FnMut(usize) -> Transport + Send,
        mut after_block: impl FnMut(usize, &[OutNote]) -> bool + Send,
    ) -> Vec<OutNote> {
        let ptr = SendPtr(self.plugin);
        let start = self.steady_time;
        let sample_rate = self.sample_rate;
        let start_processing = !self.processing;
        self.processing = true;
        let block_us = &mut self.block_us;
        block_us.clear();
        let block_peak = &mut self.block_peak;
        block_peak.clear();
        let (notes, processed) = std::thread::scope(|s| {
            s.spawn(move || {
                let ptr = ptr;
                let plugin = ptr.0;
                if start_processing {
                    unsafe { assert!(((*plugin).start_processing.expect("start"))(plugin)) };
                }
                let mut left = vec![0f32; frames as usize];
                let mut right = vec![0f32; frames as usize];
                let mut all = Vec::new();
                let mut out = OutList { notes: Vec::with_capacity(MAX_OUT_EVENTS), block_start: 0, overflow: false };
                let mut steady = start;
                let mut done = 0;
                for b in 0..blocks {
                    let raw: Vec<RawEvent> = events(b).into_iter().map(raw_event).collect();
                    let t = transport(b);
                    let tr = transport_event(&t, sample_rate);
                    let in_list = clap_input_events {
                        ctx: &raw as *const Vec<RawEvent> as *mut c_void,
                        size: Some(in_size),
                        get: Some(in_get),
                    };
                    out.notes.clear();
                    out.block_start = steady;
                    let out_list = clap_output_events {
                        ctx: &mut out as *mut OutList as *mut c_void,
                        try_push: Some(out_try_push),
                    };
                    let mut channels = [left.as_mut_ptr(), right.as_mut_ptr()];
                    let mut audio_out = clap_audio_buffer {
                        data32: channels.as_mut_ptr(),
                        data64: std::ptr::null_mut(),
                        channel_count: 2,
                        latency: 0,
                        constant_mask: 0,
                    };
                    let process = clap_process {
                        steady_time: steady as i64,
                        frames_count: frames,
                        transport: &tr,
                        audio_inputs: std::ptr::null(),
                        audio_outputs: &mut audio_out,
                        audio_inputs_count: 0,
                        audio_outputs_count: 1,
                        in_events: &in_list,
                        out_events: &out_list,
                    };
                    let t0 = std::time::Instant::now();
                    let status = unsafe { ((*plugin).process.expect("process"))(plugin, &process) };
                    block_us.push(t0.elapsed().as_secs_f64() * 1e6);
                    assert_ne!(status, CLAP_PROCESS_ERROR, "process returned an error");
                    assert!(!out.overflow, "more than {MAX_OUT_EVENTS} events in one block");
                    assert!(left.iter().chain(right.iter()).all(|s| s.is_finite()), "audio out is finite");
                    block_peak.push(left.iter().chain(right.iter()).fold(0f32, |m, s| m.max(s.abs())));
                    steady += u64::from(frames);
                    done += 1;
                    all.extend_from_slice(&out.notes);
                    if !after_block(b, &out.notes) {
                        break;
                    }
                }
                (all, done)
            })
            .join()
            .expect("audio thread")
        });
        self.steady_time += processed as u64 * u64::from(frames);
        self.pump_main_thread();
        notes
    }

    pub fn save_state(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = Vec::new();
        let stream = clap_ostream { ctx: &mut bytes as *mut Vec<u8> as *mut c_void, write: Some(ostream_write) };
        assert!(unsafe { ((*self.state).save.expect("save"))(self.plugin, &stream) }, "state save");
        bytes
    }

    pub fn load_state(&self, bytes: &[u8]) -> bool {
        let mut src = (bytes.to_vec(), 0usize);
        let stream = clap_istream { ctx: &mut src as *mut (Vec<u8>, usize) as *mut c_void, read: Some(istream_read) };
        let ok = unsafe { ((*self.state).load.expect("load"))(self.plugin, &stream) };
        self.pump_main_thread();
        ok
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        unsafe {
            if self.processing {
                let ptr = SendPtr(self.plugin);
                std::thread::scope(|s| {
                    s.spawn(move || {
                        let ptr = ptr;
                        ((*ptr.0).stop_processing.expect("stop"))(ptr.0)
                    });
                });
            }
            if self.active {
                ((*self.plugin).deactivate.expect("deactivate"))(self.plugin);
            }
            self.pump_main_thread();
            ((*self.plugin).destroy.expect("destroy"))(self.plugin);
        }
    }
}

fn raw_event(e: InEvent) -> RawEvent {
    match e {
        InEvent::Note { time, key, velocity, on } => RawEvent::Note(clap_event_note {
            header: clap_event_header {
                size: std::mem::size_of::<clap_event_note>() as u32,
                time,
                space_id: CLAP_CORE_EVENT_SPACE_ID,
                type_: if on { CLAP_EVENT_NOTE_ON } else { CLAP_EVENT_NOTE_OFF },
                flags: 0,
            },
            note_id: -1,
            port_index: 0,
            channel: 0,
            key,
            velocity,
        }),
        InEvent::Param { time, id, value } => RawEvent::Param(clap_event_param_value {
            header: clap_event_header {
                size: std::mem::size_of::<clap_event_param_value>() as u32,
                time,
                space_id: CLAP_CORE_EVENT_SPACE_ID,
                type_: CLAP_EVENT_PARAM_VALUE,
                flags: 0,
            },
            param_id: id,
            cookie: std::ptr::null_mut(),
            note_id: -1,
            port_index: -1,
            channel: -1,
            key: -1,
            value,
        }),
    }
}

fn transport_event(t: &Transport, _sample_rate: f64) -> clap_event_transport {
    let bar_len = f64::from(t.tsig.0) * 4.0 / f64::from(t.tsig.1);
    let bar = (t.beats / bar_len).floor();
    let mut flags = CLAP_TRANSPORT_HAS_TEMPO
        | CLAP_TRANSPORT_HAS_BEATS_TIMELINE
        | CLAP_TRANSPORT_HAS_SECONDS_TIMELINE
        | CLAP_TRANSPORT_HAS_TIME_SIGNATURE;
    if t.playing {
        flags |= CLAP_TRANSPORT_IS_PLAYING;
    }
    clap_event_transport {
        header: clap_event_header {
            size: std::mem::size_of::<clap_event_transport>() as u32,
            time: 0,
            space_id: CLAP_CORE_EVENT_SPACE_ID,
            type_: CLAP_EVENT_TRANSPORT,
            flags: 0,
        },
        flags,
        song_pos_beats: (t.beats * CLAP_BEATTIME_FACTOR as f64).round() as i64,
        song_pos_seconds: (t.beats * 60.0 / t.tempo_bpm * CLAP_SECTIME_FACTOR as f64).round() as i64,
        tempo: t.tempo_bpm,
        tempo_inc: 0.0,
        loop_start_beats: 0,
        loop_end_beats: 0,
        loop_start_seconds: 0,
        loop_end_seconds: 0,
        bar_start: (bar * bar_len * CLAP_BEATTIME_FACTOR as f64).round() as i64,
        bar_number: bar as i32,
        tsig_num: t.tsig.0,
        tsig_denom: t.tsig.1,
    }
}
