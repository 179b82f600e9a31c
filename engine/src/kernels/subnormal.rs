//! Flush-to-zero for subnormal floats. Late in training, gradients and Adam's moments drift
//! below f32's normal range (1.2e-38); x86 cores then take a slow microcode path for every
//! operation that reads or makes one, and a SimpleFNN epoch on MNIST slows from 0.8 s to 15 s.
//! Treating subnormals as zero (what TensorFlow does by default, and PyTorch's
//! `torch.set_flush_denormal(True)`) changes values only below 1.2e-38.

/// Makes the calling thread flush subnormal results to zero and read subnormal inputs as
/// zero (x86-64 MXCSR FTZ and DAZ); returns whether this CPU has such a mode.
pub fn flush_subnormals_to_zero() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr only read and write the thread's SSE control register, and
        // the bits set here change rounding of subnormals only, not the meaning of any code.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FTZ | DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// On a fresh thread (the mode is per thread): a product below the normal range is kept as
    /// a subnormal before the call and is zero after it; a subnormal input reads as zero.
    #[test]
    fn subnormals_become_zero_on_the_calling_thread_only() {
        std::thread::spawn(|| {
            let tiny = black_box(1e-30f32) * black_box(1e-10f32);
            assert!(tiny > 0.0 && !tiny.is_normal(), "without the mode the product is subnormal: {tiny:e}");
            if !flush_subnormals_to_zero() {
                return;
            }
            assert_eq!(black_box(1e-30f32) * black_box(1e-10f32), 0.0, "a subnormal result is flushed");
            assert_eq!(black_box(f32::from_bits(1)) * black_box(2.0f32), 0.0, "a subnormal input reads as zero");
            assert_eq!(black_box(1e-20f32) * black_box(1e-10f32), 1e-30, "normal values are untouched");
        })
        .join()
        .unwrap();
        let other = black_box(1e-30f32) * black_box(1e-10f32);
        assert!(other > 0.0, "another thread keeps the default mode");
    }
}
