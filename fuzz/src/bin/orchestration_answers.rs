//! Fuzz target `orchestration_answers`: see `paymesh_fuzz::orchestration_answers` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::orchestration_answers(data) });
    }
}
