//! A `no_std` staticlib over `tidings-core`. If any dependency pulls in
//! `std`, this fails with `duplicate lang item 'panic_impl'`. Built by
//! `.ci/run` twice: without features (no allocator at all) and with `alloc`.
#![no_std]
#![allow(unsafe_code)]

use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}

#[cfg(feature = "alloc")]
mod heap {
    extern crate alloc;
    use core::alloc::{GlobalAlloc, Layout};

    /// Never hands out memory: this crate is only linked, never run.
    struct NoHeap;

    // SAFETY: returning null is the documented way to report allocation
    // failure; `dealloc` is never reached because nothing is ever allocated.
    unsafe impl GlobalAlloc for NoHeap {
        unsafe fn alloc(&self, _: Layout) -> *mut u8 {
            core::ptr::null_mut()
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    #[global_allocator]
    static HEAP: NoHeap = NoHeap;

    /// Uses the heap-backed API so it is compiled in.
    #[unsafe(no_mangle)]
    pub extern "C" fn tidings_check_alloc(ptr: *const u8, len: usize) -> bool {
        // SAFETY: the caller passes a valid byte range (never called; link check only).
        let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
        tidings_core::Channel::from_topic(bytes).is_ok()
    }
}

/// Uses the fixed-capacity API so it is compiled in.
#[unsafe(no_mangle)]
pub extern "C" fn tidings_check(ptr: *const u8, len: usize) -> bool {
    // SAFETY: the caller passes a valid byte range (never called; link check only).
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    tidings_core::ChannelBuf::<128>::from_topic(bytes).is_ok()
}
