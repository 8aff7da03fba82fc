//! Test guest: `handle` never returns.

wit_bindgen::generate!({ world: "service", path: "../../../../../wit" });

struct Looper;

impl Guest for Looper {
    fn handle(_: Request) -> Response {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn on_record(_: StoredRecord) {}

    fn tick() {}
}

export!(Looper);
