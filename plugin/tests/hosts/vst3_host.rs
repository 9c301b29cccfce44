//! A minimal VST3 host (the `vst3` crate's COM bindings): load the module,
//! create the component, activate its buses, run process blocks on an audio
//! thread with a process context, note events and parameter changes in and
//! note events out, and get and set its state. Our COM objects are called
//! from inside the plugin's process() (allocation-checked in debug builds),
//! so they never allocate there.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::path::Path;

use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::Event_::EventTypes_::{kNoteOffEvent, kNoteOnEvent};
use vst3::Steinberg::Vst::MediaTypes_::{kAudio, kEvent};
use vst3::Steinberg::Vst::ProcessContext_::StatesAndFlags_::*;
use vst3::Steinberg::Vst::ProcessModes_::kRealtime;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::*;
use vst3::Steinberg::*;
use vst3::{Class, ComPtr, ComRef, ComWrapper, Interface};

use crate::clap_host::{InEvent, OutNote, Transport, MAX_OUT_EVENTS};

pub struct Vst3Module {
    factory: Option<ComPtr<IPluginFactory>>,
    lib: libloading::Library,
}

impl Vst3Module {
    pub fn load(so: &Path) -> Result<Self, String> {
        let lib = unsafe { libloading::Library::new(so) }.map_err(|e| format!("{}: {e}", so.display()))?;
        let factory = unsafe {
            let entry: libloading::Symbol<unsafe extern "C" fn(*mut c_void) -> bool> =
                lib.get(b"ModuleEntry\0").map_err(|e| format!("no ModuleEntry: {e}"))?;
            if !entry(std::ptr::null_mut()) {
                return Err("ModuleEntry returned false".into());
            }
            let get: libloading::Symbol<unsafe extern "system" fn() -> *mut c_void> =
                lib.get(b"GetPluginFactory\0").map_err(|e| format!("no GetPluginFactory: {e}"))?;
            ComPtr::from_raw(get() as *mut IPluginFactory).ok_or("GetPluginFactory returned null")?
        };
        Ok(Self { factory: Some(factory), lib })
    }

    pub fn instantiate(&self) -> Result<Vst3Instance, String> {
        let factory = self.factory.as_ref().ok_or("unloaded")?;
        unsafe {
            let mut info: PClassInfo = std::mem::zeroed();
            if factory.getClassInfo(0, &mut info) != kResultOk {
                return Err("getClassInfo failed".into());
            }
            let mut obj: *mut c_void = std::ptr::null_mut();
            let iid = IComponent::IID;
            let r = factory.createInstance(info.cid.as_ptr(), iid.as_ptr() as *const c_char, &mut obj);
            if r != kResultOk {
                return Err(format!("createInstance failed: {r}"));
            }
            let component = ComPtr::from_raw(obj as *mut IComponent).ok_or("null component")?;
            if component.initialize(std::ptr::null_mut()) != kResultOk {
                return Err("initialize failed".into());
            }
            let processor = component.cast::<IAudioProcessor>().ok_or("no IAudioProcessor")?;
            let controller = component.cast::<IEditController>().ok_or("no IEditController")?;
            Ok(Vst3Instance { component, processor, controller, steady_time: 0, active: false })
        }
    }
}

impl Drop for Vst3Module {
    fn drop(&mut self) {
        self.factory = None;
        unsafe {
            if let Ok(exit) = self.lib.get::<unsafe extern "C" fn() -> bool>(b"ModuleExit\0") {
                exit();
            }
        }
    }
}

pub struct Vst3Instance {
    component: ComPtr<IComponent>,
    processor: ComPtr<IAudioProcessor>,
    controller: ComPtr<IEditController>,
    pub steady_time: u64,
    active: bool,
}

struct SendPtr(*mut IComponent);
unsafe impl Send for SendPtr {}

impl Vst3Instance {
    /// (event inputs, event outputs, audio outputs) buses.
    pub fn bus_counts(&self) -> (i32, i32, i32) {
        unsafe {
            (
                self.component.getBusCount(kEvent as i32, kInput as i32),
                self.component.getBusCount(kEvent as i32, kOutput as i32),
                self.component.getBusCount(kAudio as i32, kOutput as i32),
            )
        }
    }

    pub fn param_ids(&self) -> Vec<u32> {
        unsafe {
            (0..self.controller.getParameterCount())
                .filter_map(|i| {
                    let mut info: ParameterInfo = std::mem::zeroed();
                    (self.controller.getParameterInfo(i, &mut info) == kResultOk).then_some(info.id)
                })
                .collect()
        }
    }

    pub fn normalized(&self, id: u32) -> f64 {
        unsafe { self.controller.getParamNormalized(id) }
    }

    pub fn activate(&mut self, sample_rate: f64, max_frames: i32) {
        unsafe {
            for (media, dir) in [(kEvent, kInput), (kEvent, kOutput), (kAudio, kOutput)] {
                assert_eq!(self.component.activateBus(media as i32, dir as i32, 0, 1), kResultOk);
            }
            let mut setup = ProcessSetup {
                processMode: kRealtime as i32,
                symbolicSampleSize: kSample32 as i32,
                maxSamplesPerBlock: max_frames,
                sampleRate: sample_rate,
            };
            assert_eq!(self.processor.setupProcessing(&mut setup), kResultOk);
            assert_eq!(self.component.setActive(1), kResultOk);
        }
        self.active = true;
    }

    /// Like [`crate::clap_host::Instance::process_blocks`]; parameter values are VST3-normalized.
    pub fn process_blocks(
        &mut self,
        blocks: usize,
        frames: u32,
        sample_rate: f64,
        mut events: impl FnMut(usize) -> Vec<InEvent> + Send,
        mut transport: impl FnMut(usize) -> Transport + Send,
        mut after_block: impl FnMut(usize, &[OutNote]) -> bool + Send,
    ) -> Vec<OutNote> {
        let ptr = SendPtr(self.component.as_ptr());
        let start = self.steady_time;
        let (notes, done) = std::thread::scope(|s| {
            s.spawn(move || {
                let ptr = ptr;
                let component = unsafe { ComRef::from_raw(ptr.0) }.expect("component");
                let processor = component.cast::<IAudioProcessor>().expect("processor");
                unsafe { processor.setProcessing(1) };
                let out_list = ComWrapper::new(OutEvents {
                    notes: RefCell::new(Vec::with_capacity(MAX_OUT_EVENTS)),
                    block_start: Cell::new(0),
                });
                let out_ptr = out_list.to_com_ptr::<IEventList>().expect("out list");
                let mut left = vec![0f32; frames as usize];
                let mut right = vec![0f32; frames as usize];
                let mut all = Vec::new();
                let mut steady = start;
                let mut done = 0u64;
                for b in 0..blocks {
                    let mut notes_in = Vec::new();
                    let mut params = Vec::new();
                    for e in events(b) {
                        match e {
                            InEvent::Note { time, key, velocity, on } => {
                                notes_in.push(note_event(time, key, velocity, on))
                            }
                            InEvent::Param { time, id, value } => {
                                params.push(ComWrapper::new(Queue { id, point: (time as i32, value) }))
                            }
                        }
                    }
                    let in_list = ComWrapper::new(InEvents { events: notes_in });
                    let in_ptr = in_list.to_com_ptr::<IEventList>().expect("in list");
                    let queues: Vec<ComPtr<IParamValueQueue>> =
                        params.iter().map(|q| q.to_com_ptr::<IParamValueQueue>().expect("queue")).collect();
                    let changes = ComWrapper::new(Changes { queues });
                    let changes_ptr = changes.to_com_ptr::<IParameterChanges>().expect("changes");
                    let t = transport(b);
                    let bar_len = f64::from(t.tsig.0) * 4.0 / f64::from(t.tsig.1);
                    let mut ctx: ProcessContext = unsafe { std::mem::zeroed() };
                    ctx.state = (kTempoValid | kTimeSigValid | kProjectTimeMusicValid | kBarPositionValid)
                        | if t.playing { kPlaying } else { 0 };
                    ctx.sampleRate = sample_rate;
                    ctx.projectTimeSamples = (t.beats * 60.0 / t.tempo_bpm * sample_rate).round() as i64;
                    ctx.projectTimeMusic = t.beats;
                    ctx.barPositionMusic = (t.beats / bar_len).floor() * bar_len;
                    ctx.tempo = t.tempo_bpm;
                    ctx.timeSigNumerator = i32::from(t.tsig.0);
                    ctx.timeSigDenominator = i32::from(t.tsig.1);
                    let mut channels = [left.as_mut_ptr(), right.as_mut_ptr()];
                    let mut bus = AudioBusBuffers {
                        numChannels: 2,
                        silenceFlags: 0,
                        __field0: AudioBusBuffers__type0 { channelBuffers32: channels.as_mut_ptr() },
                    };
                    out_list.notes.borrow_mut().clear();
                    out_list.block_start.set(steady);
                    let mut data = ProcessData {
                        processMode: kRealtime as i32,
                        symbolicSampleSize: kSample32 as i32,
                        numSamples: frames as i32,
                        numInputs: 0,
                        numOutputs: 1,
                        inputs: std::ptr::null_mut(),
                        outputs: &mut bus,
                        inputParameterChanges: changes_ptr.as_ptr(),
                        outputParameterChanges: std::ptr::null_mut(),
                        inputEvents: in_ptr.as_ptr(),
                        outputEvents: out_ptr.as_ptr(),
                        processContext: &mut ctx,
                    };
                    assert_eq!(unsafe { processor.process(&mut data) }, kResultOk, "process");
                    steady += u64::from(frames);
                    done += 1;
                    let block_notes = out_list.notes.borrow().clone();
                    all.extend_from_slice(&block_notes);
                    if !after_block(b, &block_notes) {
                        break;
                    }
                }
                (all, done)
            })
            .join()
            .expect("audio thread")
        });
        self.steady_time += done * u64::from(frames);
        notes
    }

    pub fn get_state(&self) -> Vec<u8> {
        let stream = ComWrapper::new(Stream { data: RefCell::new(Vec::new()), pos: Cell::new(0) });
        let ptr = stream.to_com_ptr::<IBStream>().expect("stream");
        assert_eq!(unsafe { self.component.getState(ptr.as_ptr()) }, kResultOk, "getState");
        let bytes = stream.data.borrow().clone();
        bytes
    }

    pub fn set_state(&self, bytes: &[u8]) -> bool {
        let stream = ComWrapper::new(Stream { data: RefCell::new(bytes.to_vec()), pos: Cell::new(0) });
        let ptr = stream.to_com_ptr::<IBStream>().expect("stream");
        unsafe { self.component.setState(ptr.as_ptr()) == kResultOk }
    }
}

impl Drop for Vst3Instance {
    fn drop(&mut self) {
        unsafe {
            if self.active {
                let ptr = SendPtr(self.component.as_ptr());
                std::thread::scope(|s| {
                    s.spawn(move || {
                        let ptr = ptr;
                        let c = ComRef::from_raw(ptr.0).expect("component");
                        c.cast::<IAudioProcessor>().expect("processor").setProcessing(0);
                    });
                });
                self.component.setActive(0);
            }
            self.component.terminate();
        }
    }
}

fn note_event(time: u32, key: i16, velocity: f64, on: bool) -> Event {
    let mut e: Event = unsafe { std::mem::zeroed() };
    e.sampleOffset = time as i32;
    if on {
        e.r#type = kNoteOnEvent as u16;
        e.__field0.noteOn =
            NoteOnEvent { channel: 0, pitch: key, tuning: 0.0, velocity: velocity as f32, length: 0, noteId: -1 };
    } else {
        e.r#type = kNoteOffEvent as u16;
        e.__field0.noteOff = NoteOffEvent { channel: 0, pitch: key, velocity: 0.0, noteId: -1, tuning: 0.0 };
    }
    e
}

struct InEvents {
    events: Vec<Event>,
}

impl Class for InEvents {
    type Interfaces = (IEventList,);
}

impl IEventListTrait for InEvents {
    unsafe fn getEventCount(&self) -> int32 {
        self.events.len() as int32
    }
    unsafe fn getEvent(&self, index: int32, e: *mut Event) -> tresult {
        match self.events.get(index as usize) {
            Some(ev) => {
                unsafe { *e = *ev };
                kResultOk
            }
            None => kResultFalse,
        }
    }
    unsafe fn addEvent(&self, _e: *mut Event) -> tresult {
        kResultFalse
    }
}

struct OutEvents {
    notes: RefCell<Vec<OutNote>>,
    block_start: Cell<u64>,
}

impl Class for OutEvents {
    type Interfaces = (IEventList,);
}

impl IEventListTrait for OutEvents {
    unsafe fn getEventCount(&self) -> int32 {
        self.notes.borrow().len() as int32
    }
    unsafe fn getEvent(&self, _index: int32, _e: *mut Event) -> tresult {
        kResultFalse
    }
    unsafe fn addEvent(&self, e: *mut Event) -> tresult {
        let e = unsafe { &*e };
        let mut notes = self.notes.borrow_mut();
        if notes.len() >= MAX_OUT_EVENTS {
            return kResultFalse;
        }
        let sample = self.block_start.get() + e.sampleOffset.max(0) as u64;
        match u32::from(e.r#type) {
            t if t == kNoteOnEvent => {
                let n = unsafe { e.__field0.noteOn };
                notes.push(OutNote { sample, channel: n.channel, key: n.pitch, velocity: f64::from(n.velocity) });
            }
            t if t == kNoteOffEvent => {
                let n = unsafe { e.__field0.noteOff };
                notes.push(OutNote { sample, channel: n.channel, key: n.pitch, velocity: 0.0 });
            }
            _ => {}
        }
        kResultOk
    }
}

struct Queue {
    id: u32,
    point: (i32, f64),
}

impl Class for Queue {
    type Interfaces = (IParamValueQueue,);
}

impl IParamValueQueueTrait for Queue {
    unsafe fn getParameterId(&self) -> ParamID {
        self.id
    }
    unsafe fn getPointCount(&self) -> int32 {
        1
    }
    unsafe fn getPoint(&self, index: int32, offset: *mut int32, value: *mut ParamValue) -> tresult {
        if index != 0 {
            return kResultFalse;
        }
        unsafe {
            *offset = self.point.0;
            *value = self.point.1;
        }
        kResultOk
    }
    unsafe fn addPoint(&self, _offset: int32, _value: ParamValue, _index: *mut int32) -> tresult {
        kResultFalse
    }
}

struct Changes {
    queues: Vec<ComPtr<IParamValueQueue>>,
}

impl Class for Changes {
    type Interfaces = (IParameterChanges,);
}

impl IParameterChangesTrait for Changes {
    unsafe fn getParameterCount(&self) -> int32 {
        self.queues.len() as int32
    }
    unsafe fn getParameterData(&self, index: int32) -> *mut IParamValueQueue {
        self.queues.get(index as usize).map_or(std::ptr::null_mut(), |q| q.as_ptr())
    }
    unsafe fn addParameterData(&self, _id: *const ParamID, _index: *mut int32) -> *mut IParamValueQueue {
        std::ptr::null_mut()
    }
}

struct Stream {
    data: RefCell<Vec<u8>>,
    pos: Cell<usize>,
}

impl Class for Stream {
    type Interfaces = (IBStream,);
}

impl IBStreamTrait for Stream {
    unsafe fn read(&self, buffer: *mut c_void, num_bytes: int32, num_read: *mut int32) -> tresult {
        let data = self.data.borrow();
        let n = (data.len() - self.pos.get()).min(num_bytes.max(0) as usize);
        unsafe { std::ptr::copy_nonoverlapping(data[self.pos.get()..].as_ptr(), buffer as *mut u8, n) };
        self.pos.set(self.pos.get() + n);
        if !num_read.is_null() {
            unsafe { *num_read = n as int32 };
        }
        kResultOk
    }
    unsafe fn write(&self, buffer: *mut c_void, num_bytes: int32, num_written: *mut int32) -> tresult {
        let bytes = unsafe { std::slice::from_raw_parts(buffer as *const u8, num_bytes.max(0) as usize) };
        let mut data = self.data.borrow_mut();
        let pos = self.pos.get();
        if data.len() < pos + bytes.len() {
            data.resize(pos + bytes.len(), 0);
        }
        data[pos..pos + bytes.len()].copy_from_slice(bytes);
        self.pos.set(pos + bytes.len());
        if !num_written.is_null() {
            unsafe { *num_written = bytes.len() as int32 };
        }
        kResultOk
    }
    unsafe fn seek(&self, pos: int64, mode: int32, result: *mut int64) -> tresult {
        let len = self.data.borrow().len() as i64;
        let base = match mode {
            0 => 0,
            1 => self.pos.get() as i64,
            2 => len,
            _ => return kInvalidArgument,
        };
        let new = (base + pos).clamp(0, len);
        self.pos.set(new as usize);
        if !result.is_null() {
            unsafe { *result = new };
        }
        kResultOk
    }
    unsafe fn tell(&self, pos: *mut int64) -> tresult {
        if !pos.is_null() {
            unsafe { *pos = self.pos.get() as int64 };
        }
        kResultOk
    }
}
