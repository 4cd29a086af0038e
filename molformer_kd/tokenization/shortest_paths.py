"""Shortest paths of molecular graphs for the Graphormer encodings: breadth-first search on the sparse bond graph.

`chunk_distances` gives the shortest-path length (in bonds) of every atom pair of a chunk of molecules at once, and
`chunk_shortest_path_bond_ids` the bonds along one shortest path of each pair (Graphormer's multi-hop edge
encoding). Both work on the flat (bonds) arrays of a chunk, so their cost is linear in the bonds per BFS level and
quadratic in the atoms only through the output itself; `shortest_path_bond_ids` is the one-molecule form.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNREACHABLE", "chunk_distances", "chunk_shortest_path_bond_ids", "shortest_path_bond_ids", "take_rows"]

# Distance of unreachable pairs (other fragments), larger than any molecule.
UNREACHABLE = 10**8


def chunk_distances(
    sizes: np.ndarray,
    atom_start: np.ndarray,
    pair_start: np.ndarray,
    edge_molecule: np.ndarray,
    edge_source: np.ndarray,
    edge_target: np.ndarray,
) -> np.ndarray:
    """Shortest-path lengths in bonds of every atom pair of a chunk (`UNREACHABLE` between fragments), laid out as
    the pairs (molecule m owns `pair_start[m] + i * sizes[m] + j`).

    One breadth-first search from every atom at once on the sparse bond graph, a level at a time: the frontier holds
    (source atom, atom) pairs first reached at the previous level, and each level looks at their bonds only. The work
    is pairs x mean degree, where RDKit's dense `GetDistanceMatrix` is cubic (minutes for a 3,000-atom chain).
    Directed bond e goes from local atom `edge_source[e]` to `edge_target[e]` of molecule `edge_molecule[e]`.
    """
    num_atoms = int(sizes.sum())
    molecule = np.repeat(np.arange(len(sizes)), sizes)
    edge_atom_start = atom_start.take(edge_molecule)
    bond_source = edge_source + edge_atom_start
    neighbors = (edge_target + edge_atom_start)[np.argsort(bond_source, kind="stable")]
    degree = np.bincount(bond_source, minlength=num_atoms)
    first_neighbor = np.cumsum(degree) - degree
    # Pair (s, a) of global atoms s and a of one molecule sits at `row[s] + a`.
    molecule_start = atom_start.take(molecule)
    row = pair_start.take(molecule) + (np.arange(num_atoms) - molecule_start) * sizes.take(molecule) - molecule_start
    distance = np.full(int(pair_start[-1] + sizes[-1] ** 2), UNREACHABLE, dtype=np.int64)
    claimed = np.empty_like(distance)
    frontier_source = frontier_atom = np.arange(num_atoms)
    distance[row + frontier_atom] = 0
    level = 0
    while True:
        counts = degree.take(frontier_atom)
        ends = np.cumsum(counts)
        total = int(ends[-1]) if len(ends) else 0
        if total == 0:
            return distance
        level += 1
        expanded = np.repeat(np.arange(len(frontier_atom)), counts)
        slot = np.arange(total) + (first_neighbor.take(frontier_atom) - (ends - counts)).take(expanded)
        atom, source = neighbors.take(slot), frontier_source.take(expanded)
        pair = row.take(source) + atom
        new = np.flatnonzero(distance.take(pair) == UNREACHABLE)
        pair = pair.take(new)
        # Several frontier atoms can reach the same pair (rings): the pair enters the next frontier once.
        claimed[pair] = new
        first = new[claimed.take(pair) == new]
        distance[pair] = level
        frontier_source, frontier_atom = source.take(first), atom.take(first)


def take_rows(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`table.take(index, axis=0)` for a C-contiguous 2D table, 2x faster: each row is moved as one opaque item."""
    rows = table.view(np.dtype((np.void, table.shape[1] * table.itemsize))).ravel()
    return rows.take(index).view(table.dtype).reshape(*index.shape, table.shape[1])


def chunk_shortest_path_bond_ids(
    distance: np.ndarray,
    sizes: np.ndarray,
    pair_start: np.ndarray,
    edge_molecule: np.ndarray,
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    edge_bond_id: np.ndarray,
    max_hops: int,
) -> np.ndarray:
    """`shortest_path_bond_ids` of several molecules at once, as (pairs, max_hops).

    Molecule m (`sizes[m]` atoms) owns the atom pairs `pair_start[m] + i * sizes[m] + j`; `distance` (pairs,) holds
    their shortest-path lengths (any value above the atom count if unreachable). Directed bond e goes from local
    atom `edge_source[e]` to `edge_target[e]` of molecule `edge_molecule[e]` and has id `edge_bond_id[e]` (> 0).

    The next hop of a pair (i, j) is a bond i -> k with d(k, j) = d(i, j) - 1, found by comparing every directed bond
    with every target j of its molecule (a (bonds x atoms) table, not atoms^3). Then all pairs walk their paths in
    lockstep: a pair is tracked by the index of (current atom, j); `hop_to` moves it one bond along and `first_bond`
    names the bond it crosses. A pair that has arrived (or cannot arrive) stays in place with bond id 0.
    """
    num_pairs = len(distance)
    path = np.zeros((num_pairs, max_hops), dtype=np.int64)
    longest = distance.max(initial=0)
    if longest > sizes.max(initial=0):  # unreachable pairs exist; they never take a step, so only reachable ones count
        longest = distance[distance <= sizes.max()].max()
    num_hops = min(max_hops, int(longest))
    if num_hops > 0:
        # Entry t = table_start[e] + j of the table is bond e: i -> k and target j; it moves pair (i, j) to (k, j).
        edge_size = sizes.take(edge_molecule)
        table_start = np.cumsum(edge_size) - edge_size
        first_row = pair_start.take(edge_molecule) + edge_source * edge_size  # pair (i, 0)
        from_pair = np.arange(int(edge_size.sum())) + (first_row - table_start).repeat(edge_size)
        to_pair = from_pair + ((edge_target - edge_source) * edge_size).repeat(edge_size)
        closer = np.flatnonzero(distance.take(to_pair) == distance.take(from_pair) - 1)
        # Several bonds may lead closer to j; one entry per pair is kept, and any one is a shortest path.
        chosen = np.full(num_pairs, -1, dtype=np.int64)
        chosen[from_pair.take(closer)] = closer
        moves = chosen >= 0
        hop_to = np.where(moves, to_pair.take(chosen), np.arange(num_pairs))
        first_bond = np.where(moves, edge_bond_id.repeat(edge_size).take(chosen), 0)
        pair = np.arange(num_pairs)
        for hop in range(num_hops):
            path[:, hop] = first_bond.take(pair)
            pair = hop_to.take(pair)
    return path


def shortest_path_bond_ids(
    distance: np.ndarray, edge_index: np.ndarray, bond_id: np.ndarray, max_hops: int
) -> np.ndarray:
    """(N, N, max_hops) ids (bond index + 1) of the first `min(d(i, j), max_hops)` bonds of a shortest path
    i -> j; 0 beyond the path, on the diagonal and for unreachable pairs (the path `featurize` encodes).

    `distance` (N, N) holds shortest-path lengths (any value > N for unreachable pairs), `edge_index` (2, E) the
    directed bonds and `bond_id` (N, N) the bond index + 1 of each bonded pair.
    """
    num_atoms = distance.shape[0]
    source, target = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    path = chunk_shortest_path_bond_ids(
        np.asarray(distance, dtype=np.int64).ravel(),
        np.array([num_atoms]),
        np.zeros(1, dtype=np.int64),
        np.zeros(len(source), dtype=np.int64),
        source,
        target,
        bond_id[source, target],
        max_hops,
    )
    return path.reshape(num_atoms, num_atoms, max_hops)
