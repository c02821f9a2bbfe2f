//! `PTZCmd` vectors, each derived by hand, and the checks `from_hex` makes.

use appliance_manscdp::ptz::{Pan, PtzCommand, PtzError, PtzInstruction, Tilt, Zoom};
use proptest::prelude::*;

fn moving(
    pan: Option<Pan>,
    tilt: Option<Tilt>,
    zoom: Option<Zoom>,
    speeds: [u8; 3],
) -> PtzInstruction {
    PtzInstruction::Move(PtzCommand {
        pan,
        tilt,
        zoom,
        pan_speed: speeds[0],
        tilt_speed: speeds[1],
        zoom_speed: speeds[2],
    })
}

#[test]
fn vectors() {
    let cases = [
        // Stop: A5 0F 01 00 00 00 00; A5+0F+01 = 0xB5.
        (PtzInstruction::Stop, "A50F0100000000B5"),
        // Right at pan speed 0x20: instruction 01, byte5 20; B5+01+20 = 0xD6.
        (
            moving(Some(Pan::Right), None, None, [0x20, 0, 0]),
            "A50F0101200000D6",
        ),
        // Left at 0xFF: instruction 02; B5+02+FF = 0x1B6 → B6.
        (
            moving(Some(Pan::Left), None, None, [0xFF, 0, 0]),
            "A50F0102FF0000B6",
        ),
        // Up at tilt speed 0x30 with zoom in at speed 5: instruction 08|10 = 18, byte6 30,
        // byte7 5<<4 = 50; B5+18+30+50 = 0x14D → 4D.
        (
            moving(None, Some(Tilt::Up), Some(Zoom::In), [0, 0x30, 5]),
            "A50F01180030504D",
        ),
        // Down-left, both speeds 0x10, zoom out at 15: instruction 04|02|20 = 26, byte7 F0;
        // B5+26+10+10+F0 = 0x1EB → EB.
        (
            moving(
                Some(Pan::Left),
                Some(Tilt::Down),
                Some(Zoom::Out),
                [0x10, 0x10, 15],
            ),
            "A50F01261010F0EB",
        ),
        // Preset go to 1: instruction 82, byte5 0, byte6 = preset 1, byte7 0;
        // B5+82+01 = 0x138 → 38. (Not B9: 0x138 mod 256 is 0x38.)
        (PtzInstruction::PresetGoto(1), "A50F018200010038"),
        // Preset set 3: instruction 81; B5+81+03 = 0x139 → 39.
        (PtzInstruction::PresetSet(3), "A50F018100030039"),
        // Preset delete 255: instruction 83; B5+83+FF = 0x237 → 37.
        (PtzInstruction::PresetDelete(255), "A50F018300FF0037"),
    ];
    for (instruction, hex) in cases {
        assert_eq!(instruction.to_hex(), hex, "{instruction:?}");
        assert_eq!(PtzInstruction::from_hex(hex), Ok(instruction), "{hex}");
        assert_eq!(
            PtzInstruction::from_hex(&format!(" {} ", hex.to_lowercase())),
            Ok(instruction),
            "lower case, padded"
        );
    }
}

#[test]
fn zoom_speed_is_a_nibble() {
    // 200 does not fit four bits; it is sent as the fastest, 15.
    let fast = moving(None, None, Some(Zoom::In), [0, 0, 200]);
    assert_eq!(
        PtzInstruction::from_hex(&fast.to_hex()),
        Ok(moving(None, None, Some(Zoom::In), [0, 0, 15]))
    );
}

#[test]
fn movement_without_direction_is_a_stop() {
    let idle = moving(None, None, None, [9, 9, 9]);
    assert_eq!(
        PtzInstruction::from_hex(&idle.to_hex()),
        Ok(PtzInstruction::Stop)
    );
}

#[test]
fn rejections() {
    assert_eq!(PtzInstruction::from_hex(""), Err(PtzError::NotHex));
    assert_eq!(
        PtzInstruction::from_hex("A50F0100000000"),
        Err(PtzError::NotHex)
    );
    assert_eq!(
        PtzInstruction::from_hex("A50F0100000000BG"),
        Err(PtzError::NotHex)
    );
    // 16 bytes but not ASCII: must not slice inside a character.
    assert_eq!(
        PtzInstruction::from_hex("大门大门大门大门0000"),
        Err(PtzError::NotHex)
    );
    assert_eq!(
        PtzInstruction::from_hex("A60F0100000000B6"),
        Err(PtzError::Header(0xA6))
    );
    // Version 1 would need check nibble (A+5+1)%16 = 0, i.e. byte2 10; 1F fails.
    assert_eq!(
        PtzInstruction::from_hex("A51F0100000000C5"),
        Err(PtzError::CombinationCode(0x1F))
    );
    assert_eq!(
        PtzInstruction::from_hex("A50F0100000000B4"),
        Err(PtzError::Checksum {
            expected: 0xB5,
            found: 0xB4
        })
    );
    // Left and right at once: instruction 03; B5+03 = B8.
    assert_eq!(
        PtzInstruction::from_hex("A50F0103000000B8"),
        Err(PtzError::Contradictory(0x03))
    );
    // Focus far (FI group, 41): B5+41 = F6.
    assert_eq!(
        PtzInstruction::from_hex("A50F0141000000F6"),
        Err(PtzError::Unsupported(0x41))
    );
}

fn instruction() -> impl Strategy<Value = PtzInstruction> {
    let direction = (
        proptest::option::of(prop_oneof![Just(Pan::Left), Just(Pan::Right)]),
        proptest::option::of(prop_oneof![Just(Tilt::Up), Just(Tilt::Down)]),
        proptest::option::of(prop_oneof![Just(Zoom::In), Just(Zoom::Out)]),
    )
        .prop_filter("a move has a direction", |(pan, tilt, zoom)| {
            pan.is_some() || tilt.is_some() || zoom.is_some()
        });
    prop_oneof![
        (direction, any::<u8>(), any::<u8>(), 0u8..=15).prop_map(
            |((pan, tilt, zoom), pan_speed, tilt_speed, zoom_speed)| {
                PtzInstruction::Move(PtzCommand {
                    pan,
                    tilt,
                    zoom,
                    pan_speed,
                    tilt_speed,
                    zoom_speed,
                })
            }
        ),
        Just(PtzInstruction::Stop),
        any::<u8>().prop_map(PtzInstruction::PresetSet),
        any::<u8>().prop_map(PtzInstruction::PresetGoto),
        any::<u8>().prop_map(PtzInstruction::PresetDelete),
    ]
}

proptest! {
    #[test]
    fn round_trip(instruction in instruction()) {
        let hex = instruction.to_hex();
        prop_assert_eq!(hex.len(), 16);
        prop_assert!(hex.starts_with("A50F01"));
        prop_assert_eq!(&hex, &hex.to_uppercase());
        prop_assert_eq!(PtzInstruction::from_hex(&hex), Ok(instruction));
    }

    #[test]
    fn any_text_is_safe(text in "\\PC{0,20}") {
        let _ = PtzInstruction::from_hex(&text);
    }

    #[test]
    fn any_bytes_are_safe(bytes in any::<[u8; 8]>()) {
        if let Ok(instruction) = PtzInstruction::from_bytes(bytes) {
            // Whatever reads must have had a valid checksum.
            let sum = bytes[..7].iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
            prop_assert_eq!(sum, bytes[7]);
            let _ = instruction.to_hex();
        }
    }
}
