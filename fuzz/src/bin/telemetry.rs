//! Fuzz target `telemetry`: see `paymesh_fuzz::telemetry` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::telemetry(data) });
    }
}
