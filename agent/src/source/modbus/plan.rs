//! Read planning: which requests one poll cycle sends. Pure; no sockets.
//!
//! Points of the same table (same function code; the unit is the device's)
//! are sorted by address and merged into one request when the request stays
//! within the protocol limit (125 registers, 2000 coils or inputs), within
//! the device's `max_read`, and the addresses between them number at most
//! `max_gap`. Overlapping points (two bits of one register) always merge.
//! Invariant: every point lies wholly inside exactly one block.

use super::types::Table;
use crate::config::ModbusPoint;

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into the device's point list, in address order.
    pub points: Vec<usize>,
}

/// How far requests may be merged for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadLimits {
    /// Unread addresses a request may span between two points.
    pub max_gap: u16,
    /// Device cap on the addresses of one request, below the protocol limit.
    pub max_read: Option<u16>,
}

impl ReadLimits {
    fn cap(self, table: Table) -> u32 {
        let protocol = table.protocol_limit();
        u32::from(self.max_read.map_or(protocol, |m| m.clamp(1, protocol)))
    }
}

/// Group points into as few requests as `limits` allow.
pub fn plan_reads(points: &[ModbusPoint], limits: ReadLimits) -> Vec<ReadBlock> {
    plan_where(points, limits, |_| true)
}

/// The requests for the points of one poll group (an index into the
/// device's groups): points of different groups never share a request.
pub fn plan_group(points: &[ModbusPoint], group: usize, limits: ReadLimits) -> Vec<ReadBlock> {
    plan_where(points, limits, |p| p.group == group)
}

fn plan_where(
    points: &[ModbusPoint],
    limits: ReadLimits,
    keep: impl Fn(&ModbusPoint) -> bool,
) -> Vec<ReadBlock> {
    let mut order: Vec<usize> = (0..points.len()).filter(|&i| keep(&points[i])).collect();
    order.sort_by_key(|&i| (points[i].table, points[i].register));
    let mut blocks: Vec<ReadBlock> = Vec::new();
    for i in order {
        let table = points[i].table;
        let start = u32::from(points[i].register);
        let end = start + u32::from(points[i].data_type.width());
        if let Some(b) = blocks.last_mut().filter(|b| b.table == table) {
            let b_start = u32::from(b.start);
            let b_end = b_start + u32::from(b.count);
            let new_end = b_end.max(end);
            if start <= b_end + u32::from(limits.max_gap) && new_end - b_start <= limits.cap(table)
            {
                b.count = (new_end - b_start) as u16;
                b.points.push(i);
                continue;
            }
        }
        blocks.push(ReadBlock {
            table,
            start: start as u16,
            count: (end - start) as u16,
            points: vec![i],
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::modbus::types::{ByteOrder, DataType};

    fn pt(table: Table, register: u16, data_type: DataType) -> ModbusPoint {
        ModbusPoint {
            name: format!("p{register}"),
            ..ModbusPoint::raw(table, register, data_type, ByteOrder::Abcd)
        }
    }

    fn h(register: u16, data_type: DataType) -> ModbusPoint {
        pt(Table::Holding, register, data_type)
    }

    #[test]
    fn groups_are_planned_apart() {
        let mut points = vec![
            h(0, DataType::U16),
            h(1, DataType::U16),
            h(2, DataType::U16),
        ];
        points[1].group = 1;
        let lim = ReadLimits::default();
        let g0 = plan_group(&points, 0, lim);
        let g1 = plan_group(&points, 1, lim);
        assert_eq!(shape(&g0), [(Table::Holding, 0, 1), (Table::Holding, 2, 1)]);
        assert_eq!(
            (g0[0].points.clone(), g0[1].points.clone()),
            (vec![0], vec![2])
        );
        assert_eq!(shape(&g1), [(Table::Holding, 1, 1)]);
        assert_eq!(g1[0].points, [1]);
        assert!(plan_group(&points, 2, lim).is_empty());
    }

    /// (start, count) of each block, per table.
    fn shape(plan: &[ReadBlock]) -> Vec<(Table, u16, u16)> {
        plan.iter().map(|b| (b.table, b.start, b.count)).collect()
    }

    /// What the plan should be for a point list and limits.
    type Case = (
        &'static str,
        Vec<ModbusPoint>,
        ReadLimits,
        Vec<(Table, u16, u16)>,
    );

    #[test]
    fn plans_match_the_table() {
        use DataType::*;
        use Table::*;
        let lim = |max_gap, max_read| ReadLimits { max_gap, max_read };
        let cases: Vec<Case> = vec![
            (
                "adjacent merge, a gap splits by default",
                vec![h(10, U16), h(0, F32), h(2, I16), h(3, U16)],
                lim(0, None),
                vec![(Holding, 0, 4), (Holding, 10, 1)],
            ),
            (
                "a gap within max_gap merges",
                vec![h(0, U16), h(5, U16), h(20, U16)],
                lim(4, None),
                vec![(Holding, 0, 6), (Holding, 20, 1)],
            ),
            (
                "same addresses in different tables never merge",
                vec![
                    h(0, U16),
                    pt(Input, 0, U16),
                    pt(Input, 1, U16),
                    pt(Coil, 0, Bool),
                ],
                lim(10, None),
                vec![(Coil, 0, 1), (Holding, 0, 1), (Input, 0, 2)],
            ),
            (
                "two bits of one register share it",
                vec![h(7, Bit(0)), h(7, Bit(15)), h(8, U16)],
                lim(0, None),
                vec![(Holding, 7, 2)],
            ),
            (
                "max_read caps a request",
                vec![h(0, U32), h(2, U32), h(4, U32)],
                lim(0, Some(4)),
                vec![(Holding, 0, 4), (Holding, 4, 2)],
            ),
            (
                "a 64-bit value is four registers",
                vec![h(0, F64), h(4, I64), h(8, U64)],
                lim(0, None),
                vec![(Holding, 0, 12)],
            ),
            (
                "coils merge up to 2000",
                (0..2001).map(|a| pt(Coil, a, Bool)).collect(),
                lim(0, None),
                vec![(Coil, 0, 2000), (Coil, 2000, 1)],
            ),
            (
                "discrete inputs across a gap",
                vec![pt(Discrete, 0, Bool), pt(Discrete, 9, Bool)],
                lim(8, None),
                vec![(Discrete, 0, 10)],
            ),
        ];
        for (what, points, limits, want) in cases {
            let plan = plan_reads(&points, limits);
            assert_eq!(shape(&plan), want, "{what}");
            let mut served: Vec<usize> = plan.iter().flat_map(|b| b.points.clone()).collect();
            served.sort();
            assert_eq!(served, (0..points.len()).collect::<Vec<_>>(), "{what}");
            for b in &plan {
                for &i in &b.points {
                    let p = &points[i];
                    assert!(p.register >= b.start, "{what}");
                    assert!(
                        p.register + p.data_type.width() <= b.start + b.count,
                        "{what}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_request_never_exceeds_125_registers() {
        let points: Vec<_> = (0..200).map(|r| h(r, DataType::U16)).collect();
        let plan = plan_reads(&points, ReadLimits::default());
        assert_eq!(
            shape(&plan),
            vec![(Table::Holding, 0, 125), (Table::Holding, 125, 75)]
        );
    }

    #[test]
    fn a_gap_never_stretches_a_request_past_the_limit() {
        let points = [
            h(0, DataType::U16),
            h(124, DataType::U16),
            h(125, DataType::U16),
        ];
        let plan = plan_reads(
            &points,
            ReadLimits {
                max_gap: 200,
                max_read: None,
            },
        );
        assert_eq!(
            shape(&plan),
            vec![(Table::Holding, 0, 125), (Table::Holding, 125, 1)]
        );
    }
}
