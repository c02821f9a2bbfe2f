//! Skill configs (`appliance_skills::SkillConfig`) from arbitrary bytes: the API and the cloud
//! hand the daemon JSON it did not write, and so does this target. Also the plate
//! normalisation, which runs on whatever text OCR reads.
//!
//! Properties:
//! - parsing never panics; a config that parses is valid and survives a round trip through
//!   its JSON (what the daemon stores is what it will load after a restart);
//! - `normalise_plate` is idempotent (stored plates and read plates meet in one form).

#![no_main]

use appliance_skills::SkillConfig;
use appliance_skills::library::plate::normalise_plate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = SkillConfig::from_json(data) {
        config.validate().expect("a parsed config is valid");
        let json = serde_json::to_vec(&config).expect("a config serialises");
        match SkillConfig::from_json(&json) {
            Ok(again) => assert_eq!(again, config, "round trip differs"),
            Err(error) => panic!("stored form does not parse: {error}"),
        }
    }
    let text = String::from_utf8_lossy(data);
    let once = normalise_plate(&text);
    assert_eq!(normalise_plate(&once), once, "normalisation not idempotent");
});
