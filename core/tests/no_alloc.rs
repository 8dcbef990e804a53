//! The heapless path parses, validates and prints without the allocator.
//! A counting global allocator in this test binary proves it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tidings_core::ChannelBuf;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; it only
// counts allocations, which is the measurement this test exists for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn heapless_path_parses_room_42_with_no_allocator() {
    // Warm up anything the test harness allocates lazily.
    let _ = ChannelBuf::<64>::parse_text(":warm");
    let mut out = heapless::String::<64>::new();

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let ch = ChannelBuf::<64>::parse_text("{:room, 42}").unwrap();
    let again = ChannelBuf::<64>::from_topic(ch.as_topic_bytes()).unwrap();
    core::fmt::write(&mut out, format_args!("{again}")).unwrap();
    let bad = ChannelBuf::<64>::parse_text("{:room, %{a: 1}}").unwrap_err();
    let after = ALLOCATIONS.load(Ordering::SeqCst);

    assert_eq!(after - before, 0, "the heapless path allocated");
    assert_eq!(out, "{:room, 42}");
    assert_eq!(ch, again);
    assert!(matches!(
        bad,
        tidings_core::ChannelError::NotPrimitive { .. }
    ));
    // The counter does count: the heap path allocates.
    let _heap = tidings_core::Channel::parse("{:room, 42}").unwrap();
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > after);
}
