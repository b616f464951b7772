//! Small-cell suppression of a table of counts: which cells a published
//! table must hide so that no count below `k`, alone or differenced from a
//! total or a coarser table, can be read back.

use std::collections::BTreeMap;

/// Which cells to suppress: every count from 1 to `k - 1` (primary), and
/// then, wherever a line of the table (the cells that differ in one
/// category only, or the whole table against its total) would hold exactly
/// one suppressed cell, the smallest other count in that line too
/// (complementary): a published total or a coarser table minus the cells
/// shown would otherwise give the hidden count back.
pub fn suppress(keys: &[Vec<String>], values: &[u64], k: u64) -> Vec<bool> {
    let mut hidden: Vec<bool> = values.iter().map(|&n| n > 0 && n < k).collect();
    let dims = keys.first().map_or(0, Vec::len);
    loop {
        let mut changed = false;
        // Lines: for each category, cells alike in every other; plus the
        // whole table (its total is published).
        let mut lines: Vec<Vec<usize>> = vec![(0..keys.len()).collect()];
        for d in 0..dims {
            let mut by_rest: BTreeMap<Vec<&String>, Vec<usize>> = BTreeMap::new();
            for (i, key) in keys.iter().enumerate() {
                let rest: Vec<&String> = key
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != d)
                    .map(|(_, v)| v)
                    .collect();
                by_rest.entry(rest).or_default().push(i);
            }
            lines.extend(by_rest.into_values());
        }
        // The narrowest lines first: a partner forced there often settles
        // the wider lines too, where choosing first would hide more.
        lines.sort_by_key(Vec::len);
        for line in lines {
            if line.len() < 2 || line.iter().filter(|&&i| hidden[i]).count() != 1 {
                continue;
            }
            if let Some(&next) = line
                .iter()
                .filter(|&&i| !hidden[i])
                .min_by_key(|&&i| (values[i], &keys[i]))
            {
                hidden[next] = true;
                changed = true;
            }
        }
        if !changed {
            return hidden;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn one_small_cell_in_a_line_takes_the_next_smallest_with_it() {
        // female 3 would be total 20 minus male 17.
        let k = keys(&[&["female"], &["male"]]);
        assert_eq!(suppress(&k, &[3, 17], 5), vec![true, true]);
        // Two small cells hide each other; the large one stays.
        let k = keys(&[&["female"], &["male"], &["unknown"]]);
        assert_eq!(suppress(&k, &[3, 17, 2], 5), vec![true, false, true]);
        // No small cell, nothing hidden.
        assert_eq!(suppress(&k, &[5, 17, 9], 5), vec![false, false, false]);
    }

    #[test]
    fn suppression_holds_along_every_category_of_a_grid() {
        //            female  male
        // KH-TH        12      3
        // KH-VN         8      9
        let k = keys(&[
            &["KH-TH", "female"],
            &["KH-TH", "male"],
            &["KH-VN", "female"],
            &["KH-VN", "male"],
        ]);
        let hidden = suppress(&k, &[12, 3, 8, 9], 5);
        // KH-TH male is small. Its row (KH-TH) would give it back from
        // the corridor total, its column (male) from the sex total: the
        // smallest partner in each is hidden too, which in turn needs a
        // partner in its own lines.
        assert!(hidden[1]);
        for (line, name) in [
            (vec![0, 1], "KH-TH row"),
            (vec![2, 3], "KH-VN row"),
            (vec![0, 2], "female column"),
            (vec![1, 3], "male column"),
            (vec![0, 1, 2, 3], "whole table"),
        ] {
            let n = line.iter().filter(|&&i| hidden[i]).count();
            assert_ne!(n, 1, "{name}: one hidden cell alone in its line");
        }
    }
}
