//! Fuzz target `prom_text`: see `paymesh_fuzz::prom_text` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::prom_text(data) });
    }
}
