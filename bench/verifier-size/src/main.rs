//! One signature verification on a Cortex-M4F and nothing else, so that `bench/device.sh` can
//! size each verifier crate alone (the build with `none` is the start-up to subtract). Inputs
//! come from RAM by volatile reads and the verdict goes to a register, so nothing is folded
//! away. Never run; only linked and measured.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};

/// `N` bytes from RAM the optimizer cannot see into.
fn input<const N: usize>(at: usize) -> [u8; N] {
    let mut b = [0u8; N];
    for (i, x) in b.iter_mut().enumerate() {
        // SAFETY: inside the RAM of the memory map.
        *x = unsafe { read_volatile((at + i) as *const u8) };
    }
    b
}

#[cortex_m_rt::entry]
fn main() -> ! {
    #[cfg(not(feature = "p256"))]
    let key: [u8; 32] = input(0x2000_1000);
    let sig: [u8; 64] = input(0x2000_1100);
    // A COSE Sig_structure over a SUIT digest is about this long.
    let msg: [u8; 96] = input(0x2000_1200);
    #[cfg(feature = "salty")]
    let ok = match salty::PublicKey::try_from(&key) {
        Ok(k) => k.verify(&msg, &salty::Signature::from(&sig)).is_ok(),
        Err(_) => false,
    };
    #[cfg(feature = "compact")]
    let ok = ed25519_compact::PublicKey::new(key)
        .verify(msg, &ed25519_compact::Signature::new(sig))
        .is_ok();
    #[cfg(feature = "dalek")]
    let ok = match ed25519_dalek::VerifyingKey::from_bytes(&key) {
        Ok(k) => k
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok(),
        Err(_) => false,
    };
    #[cfg(feature = "p256")]
    let ok = {
        use p256::ecdsa::signature::Verifier;
        let point: [u8; 65] = input(0x2000_1300);
        match (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&point),
            p256::ecdsa::Signature::from_slice(&sig),
        ) {
            (Ok(k), Ok(s)) => k.verify(&msg, &s).is_ok(),
            _ => false,
        }
    };
    #[cfg(feature = "none")]
    let ok = key[0] ^ sig[0] ^ msg[0] == 0;
    // SAFETY: a write to a (stand-in) device register.
    unsafe { write_volatile(0x4001_1004 as *mut u8, u8::from(ok)) };
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
