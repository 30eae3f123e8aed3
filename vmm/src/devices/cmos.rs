//! A minimal MC146818 CMOS RTC at ports 0x70/0x71: wall-clock time from the host (UTC), the
//! status registers guests poll, and 128 bytes of NVRAM. No alarms or periodic interrupts.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// 32.768 kHz time base, 1024 Hz rate; UIP (bit 7) never set, so readers never wait.
const STATUS_A_VALUE: u8 = 0x26;
/// 24-hour mode, BCD.
const STATUS_B_DEFAULT: u8 = 0x02;
const STATUS_B_BINARY: u8 = 0x04;
const STATUS_B_24H: u8 = 0x02;
/// Valid RAM and time.
const STATUS_D_VALUE: u8 = 0x80;

pub type Clock = Box<dyn Fn() -> i64 + Send>;

pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    clock: Clock,
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

impl Cmos {
    pub fn new() -> Self {
        Self::with_clock(Box::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        }))
    }

    /// A CMOS whose time comes from `clock` (Unix seconds), for tests.
    pub fn with_clock(clock: Clock) -> Self {
        let mut nvram = [0u8; 128];
        nvram[STATUS_B as usize] = STATUS_B_DEFAULT;
        Cmos {
            index: 0,
            nvram,
            clock,
        }
    }

    fn encode(&self, v: u8) -> u8 {
        if self.nvram[STATUS_B as usize] & STATUS_B_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn read_register(&self, reg: u8) -> u8 {
        let now = (self.clock)();
        let days = now.div_euclid(86_400);
        let secs = now.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        match reg {
            SECONDS => self.encode((secs % 60) as u8),
            MINUTES => self.encode((secs / 60 % 60) as u8),
            HOURS => {
                let h = (secs / 3600) as u8;
                if self.nvram[STATUS_B as usize] & STATUS_B_24H != 0 {
                    self.encode(h)
                } else {
                    let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
                    self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
                }
            }
            // 1970-01-01 was a Thursday; Sunday is 1.
            WEEKDAY => self.encode(((days + 4).rem_euclid(7) + 1) as u8),
            DAY => self.encode(day as u8),
            MONTH => self.encode(month as u8),
            YEAR => self.encode(year.rem_euclid(100) as u8),
            CENTURY => self.encode(year.div_euclid(100) as u8),
            STATUS_A => STATUS_A_VALUE,
            STATUS_C => 0,
            STATUS_D => STATUS_D_VALUE,
            r => self.nvram[usize::from(r & 0x7f)],
        }
    }
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let v = match offset {
            1 => self.read_register(self.index),
            _ => 0xff,
        };
        data.fill(v);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            // Bit 7 is the NMI mask on real hardware.
            0 => self.index = v & 0x7f,
            1 => match self.index {
                SECONDS..=YEAR | CENTURY | STATUS_A | STATUS_C | STATUS_D => {}
                STATUS_B => self.nvram[STATUS_B as usize] = v & (STATUS_B_BINARY | STATUS_B_24H),
                i => self.nvram[usize::from(i)] = v,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(c: &mut Cmos, r: u8) -> u8 {
        c.write(0x70, 0, &[r]);
        let mut b = [0u8];
        c.read(0x70, 1, &mut b);
        b[0]
    }

    #[test]
    fn reports_a_known_time_in_bcd() {
        // 2024-02-29 13:45:07 UTC, a Thursday.
        let mut c = Cmos::with_clock(Box::new(|| 1_709_214_307));
        assert_eq!(reg(&mut c, SECONDS), 0x07);
        assert_eq!(reg(&mut c, MINUTES), 0x45);
        assert_eq!(reg(&mut c, HOURS), 0x13);
        assert_eq!(reg(&mut c, DAY), 0x29);
        assert_eq!(reg(&mut c, MONTH), 0x02);
        assert_eq!(reg(&mut c, YEAR), 0x24);
        assert_eq!(reg(&mut c, CENTURY), 0x20);
        assert_eq!(reg(&mut c, WEEKDAY), 5);
        assert_eq!(reg(&mut c, STATUS_A) & 0x80, 0, "never update-in-progress");
        assert_eq!(reg(&mut c, STATUS_D), 0x80);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut c = Cmos::with_clock(Box::new(|| 1_709_214_307));
        c.write(0x70, 0, &[STATUS_B]);
        c.write(0x70, 1, &[STATUS_B_BINARY]);
        assert_eq!(reg(&mut c, MINUTES), 45);
        assert_eq!(reg(&mut c, HOURS), 0x80 | 1, "1 PM");
    }

    #[test]
    fn nvram_is_storage_and_time_is_read_only() {
        let mut c = Cmos::with_clock(Box::new(|| 0));
        c.write(0x70, 0, &[0x80 | 0x40]);
        c.write(0x70, 1, &[0x5a]);
        assert_eq!(reg(&mut c, 0x40), 0x5a);
        c.write(0x70, 0, &[SECONDS]);
        c.write(0x70, 1, &[0x33]);
        assert_eq!(reg(&mut c, SECONDS), 0);
        assert_eq!(reg(&mut c, YEAR), 0x70);
    }

    #[test]
    fn dates_far_apart() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(47_482), (2100, 1, 1));
    }
}
