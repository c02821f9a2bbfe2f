//! The `PTZCmd` of a `DeviceControl`: eight bytes written as 16 hex digits (GB/T 28181-2016 A.3).
//!
//! | byte | content |
//! |------|---------|
//! | 1 | `A5`, the header |
//! | 2 | combination code 1: version (0) in the high nibble, and in the low nibble the check `(byte1 high nibble + byte1 low nibble + byte2 high nibble) % 16` = `(0xA + 0x5 + 0) % 16` = `F`; hence the `0F` every implementation sends |
//! | 3 | address, low 8 bits (1) |
//! | 4 | instruction: bits right `01`, left `02`, down `04`, up `08`, zoom in `10`, zoom out `20`; presets `81` set, `82` go to, `83` delete |
//! | 5 | pan speed (presets: 0) |
//! | 6 | tilt speed (presets: the preset number) |
//! | 7 | zoom speed 0..=15 in the high nibble, address high nibble (0) in the low one |
//! | 8 | checksum: sum of bytes 1..=7 mod 256 |
//!
//! The hex is written upper-case, as devices and WVP send it; reading accepts either case.

use serde::{Deserialize, Serialize};

const HEADER: u8 = 0xA5;
const VERSION: u8 = 0;
/// Only the low 8 bits (byte 3) are non-zero: address 1, the high nibble in byte 7 is 0.
const ADDRESS_LOW: u8 = 0x01;

const RIGHT: u8 = 0x01;
const LEFT: u8 = 0x02;
const DOWN: u8 = 0x04;
const UP: u8 = 0x08;
const ZOOM_IN: u8 = 0x10;
const ZOOM_OUT: u8 = 0x20;
const PRESET_SET: u8 = 0x81;
const PRESET_GOTO: u8 = 0x82;
const PRESET_DELETE: u8 = 0x83;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pan {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tilt {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Zoom {
    In,
    Out,
}

/// A continuous movement; the camera keeps moving until a [`PtzInstruction::Stop`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PtzCommand {
    pub pan: Option<Pan>,
    pub tilt: Option<Tilt>,
    pub zoom: Option<Zoom>,
    pub pan_speed: u8,
    pub tilt_speed: u8,
    /// 0..=15: it has a nibble on the wire; larger values are sent as 15.
    pub zoom_speed: u8,
}

/// What a `PTZCmd` can say.
///
/// A [`PtzInstruction::Move`] with no direction at all has instruction byte 0, which is what a
/// stop is, so it reads back as [`PtzInstruction::Stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PtzInstruction {
    Move(PtzCommand),
    Stop,
    PresetSet(u8),
    PresetGoto(u8),
    PresetDelete(u8),
}

/// A `PTZCmd` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PtzError {
    #[error("expected 16 hex digits")]
    NotHex,
    #[error("first byte is {0:02X}, expected A5")]
    Header(u8),
    #[error("combination code {0:02X} fails its check nibble")]
    CombinationCode(u8),
    #[error("checksum is {found:02X}, expected {expected:02X}")]
    Checksum { expected: u8, found: u8 },
    #[error("instruction {0:02X} asks for opposite directions at once")]
    Contradictory(u8),
    #[error("instruction {0:02X} is not supported")]
    Unsupported(u8),
}

impl PtzInstruction {
    /// The eight bytes, checksum included.
    pub fn to_bytes(&self) -> [u8; 8] {
        let (instruction, data1, data2, data3) = match *self {
            PtzInstruction::Move(command) => {
                let mut instruction = 0;
                instruction |= match command.pan {
                    Some(Pan::Right) => RIGHT,
                    Some(Pan::Left) => LEFT,
                    None => 0,
                };
                instruction |= match command.tilt {
                    Some(Tilt::Down) => DOWN,
                    Some(Tilt::Up) => UP,
                    None => 0,
                };
                instruction |= match command.zoom {
                    Some(Zoom::In) => ZOOM_IN,
                    Some(Zoom::Out) => ZOOM_OUT,
                    None => 0,
                };
                (
                    instruction,
                    command.pan_speed,
                    command.tilt_speed,
                    command.zoom_speed.min(15) << 4,
                )
            }
            PtzInstruction::Stop => (0, 0, 0, 0),
            PtzInstruction::PresetSet(preset) => (PRESET_SET, 0, preset, 0),
            PtzInstruction::PresetGoto(preset) => (PRESET_GOTO, 0, preset, 0),
            PtzInstruction::PresetDelete(preset) => (PRESET_DELETE, 0, preset, 0),
        };
        let mut bytes = [
            HEADER,
            combination_code_1(VERSION),
            ADDRESS_LOW,
            instruction,
            data1,
            data2,
            data3,
            0,
        ];
        bytes[7] = checksum(&bytes);
        bytes
    }

    /// The 16 upper-case hex digits for `<PTZCmd>`.
    pub fn to_hex(&self) -> String {
        self.to_bytes()
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect()
    }

    /// Reads 16 hex digits (either case, surrounding whitespace ignored), checking header,
    /// combination code and checksum. The address is not checked: the device is already chosen
    /// by the message's `DeviceID`.
    pub fn from_hex(text: &str) -> Result<Self, PtzError> {
        let digits = text.trim().as_bytes();
        if digits.len() != 16 {
            return Err(PtzError::NotHex);
        }
        let mut bytes = [0u8; 8];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Self::from_bytes(bytes)
    }

    /// Like [`PtzInstruction::from_hex`], from the bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Result<Self, PtzError> {
        if bytes[0] != HEADER {
            return Err(PtzError::Header(bytes[0]));
        }
        if bytes[1] != combination_code_1(bytes[1] >> 4) {
            return Err(PtzError::CombinationCode(bytes[1]));
        }
        let expected = checksum(&bytes);
        if bytes[7] != expected {
            return Err(PtzError::Checksum {
                expected,
                found: bytes[7],
            });
        }
        let instruction = bytes[3];
        match instruction {
            0 => Ok(PtzInstruction::Stop),
            PRESET_SET => Ok(PtzInstruction::PresetSet(bytes[5])),
            PRESET_GOTO => Ok(PtzInstruction::PresetGoto(bytes[5])),
            PRESET_DELETE => Ok(PtzInstruction::PresetDelete(bytes[5])),
            // The two high bits select other instruction groups (focus/iris, cruise, scan…).
            _ if instruction & 0xC0 != 0 => Err(PtzError::Unsupported(instruction)),
            _ => {
                let pick = |first: u8, second: u8| match (instruction & first, instruction & second)
                {
                    (0, 0) => Ok(None),
                    (_, 0) => Ok(Some(true)),
                    (0, _) => Ok(Some(false)),
                    _ => Err(PtzError::Contradictory(instruction)),
                };
                Ok(PtzInstruction::Move(PtzCommand {
                    pan: pick(RIGHT, LEFT)?.map(|right| if right { Pan::Right } else { Pan::Left }),
                    tilt: pick(DOWN, UP)?.map(|down| if down { Tilt::Down } else { Tilt::Up }),
                    zoom: pick(ZOOM_IN, ZOOM_OUT)?.map(
                        |zoom_in| {
                            if zoom_in { Zoom::In } else { Zoom::Out }
                        },
                    ),
                    pan_speed: bytes[4],
                    tilt_speed: bytes[5],
                    zoom_speed: bytes[6] >> 4,
                }))
            }
        }
    }
}

/// Byte 2: `version` in the high nibble, check nibble in the low one.
fn combination_code_1(version: u8) -> u8 {
    let check = ((HEADER >> 4) + (HEADER & 0x0F) + (version & 0x0F)) % 16;
    ((version & 0x0F) << 4) | check
}

/// Sum of bytes 1..=7 mod 256.
fn checksum(bytes: &[u8; 8]) -> u8 {
    bytes[..7]
        .iter()
        .fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

fn nibble(digit: u8) -> Result<u8, PtzError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(PtzError::NotHex),
    }
}
