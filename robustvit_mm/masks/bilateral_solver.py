"""Fast bilateral solver (Barron & Poole, "The Fast Bilateral Solver", ECCV 2016) on scipy.sparse.

Written from the paper's description; TokenCut uses it to snap a coarse patch-level mask to image
edges. The solver looks for an output ``x`` close to a target ``t`` (weighted by a confidence ``c``)
that is smooth under a bilateral affinity of the reference image::

    minimise  lam/2 * sum_ij W_ij (x_i - x_j)^2  +  sum_i c_i (x_i - t_i)^2

The bilateral affinity ``W`` is approximated on a bilateral grid: every pixel is assigned
("splatted") to the vertex at its position ``(x/sigma_spatial, y/sigma_spatial, Y/sigma_luma,
U/sigma_chroma, V/sigma_chroma)`` (YUV colour space) truncated to integers, as the original
TokenCut solver does (``coordinates='round'`` rounds instead); only occupied vertices are kept.
The grid is blurred with a [1 2 1] kernel along each of the five axes and the resulting affinity is
bistochastised (Sinkhorn-like normalisation) so that every pixel has the same total affinity. The
problem is then solved for one value per vertex ``y`` (``x = S^T y``) with Jacobi-preconditioned
conjugate gradients::

    A = lam * (Dm - Dn B Dn) + diag(S c),     b = S (c * t)

where ``S`` is the splat matrix, ``B`` the grid blur and ``Dn``, ``Dm`` the bistochastisation
diagonals.
"""
import numpy as np
import scipy.sparse as sp

__all__ = ['rgb_to_yuv', 'BilateralGrid', 'bilateral_solve']

# TokenCut's defaults (its CLI defaults for the grid; the solver parameters are hard-coded there).
DEFAULT_GRID = dict(sigma_spatial=16, sigma_luma=16, sigma_chroma=8)
# How a pixel's grid position becomes a vertex: 'truncate' as the original TokenCut solver.
GRID_COORDINATES = ('truncate', 'round')
DEFAULT_SOLVER = dict(lam=256.0, cg_maxiter=25, cg_tol=1e-5, a_diag_min=1e-5, bistoch_iters=10)


def rgb_to_yuv(image):
    """(H, W, 3) RGB in [0, 255] -> (H, W, 3) float64 Y, U, V (full-range BT.601, as in JPEG)."""
    rgb = np.asarray(image, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) RGB image, got shape {rgb.shape}')
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    v = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.stack([y, u, v], axis=-1)


class BilateralGrid:
    """A sparse 5-D bilateral grid (x, y, luma, chroma U, chroma V) of an RGB reference image.

    Attributes:
        npixels, nvertices: sizes of the pixel and vertex spaces.
        S: (nvertices, npixels) splat matrix (each pixel goes to exactly one vertex).
        B: (nvertices, nvertices) blur: 2 * 5 on the diagonal plus 1 for each occupied neighbour at
           offset +-1 along one axis.
    """

    NDIM = 5

    def __init__(self, image, sigma_spatial=16, sigma_luma=16, sigma_chroma=8,
                 coordinates='truncate'):
        if coordinates not in GRID_COORDINATES:
            raise ValueError(f'coordinates must be one of {GRID_COORDINATES}, got {coordinates!r}')
        yuv = rgb_to_yuv(image)
        h, w = yuv.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        position = np.stack([
            xx / sigma_spatial, yy / sigma_spatial, yuv[..., 0] / sigma_luma,
            yuv[..., 1] / sigma_chroma, yuv[..., 2] / sigma_chroma
        ], axis=-1).reshape(-1, self.NDIM)
        # All positions are >= 0 (U, V >= 0.5 for RGB in [0, 255]), so truncation is the floor.
        rounded = np.trunc(position) if coordinates == 'truncate' else np.rint(position)
        coords = rounded.astype(np.int64)
        # Shift by one so that a neighbour at -1 or +1 is always inside the (padded) box: the
        # mixed-radix key below then never aliases two different vertices.
        coords -= coords.min(axis=0) - 1
        dims = coords.max(axis=0) + 2
        strides = np.ones(self.NDIM, dtype=np.int64)
        for d in range(self.NDIM - 2, -1, -1):
            strides[d] = strides[d + 1] * dims[d + 1]
        keys = coords @ strides
        vertex_keys, pixel_to_vertex = np.unique(keys, return_inverse=True)
        pixel_to_vertex = pixel_to_vertex.reshape(-1)

        self.shape = (h, w)
        self.npixels = h * w
        self.nvertices = len(vertex_keys)
        self.pixel_to_vertex = pixel_to_vertex
        self.S = sp.csr_matrix((np.ones(self.npixels), (pixel_to_vertex, np.arange(self.npixels))),
                               shape=(self.nvertices, self.npixels))

        rows, cols = [], []
        index = np.arange(self.nvertices)
        for d in range(self.NDIM):
            for offset in (-1, 1):
                neighbour = vertex_keys + offset * strides[d]
                pos = np.searchsorted(vertex_keys, neighbour)
                pos_c = np.minimum(pos, self.nvertices - 1)
                found = vertex_keys[pos_c] == neighbour
                rows.append(index[found])
                cols.append(pos_c[found])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        neighbours = sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                   shape=(self.nvertices, self.nvertices))
        self.B = (2.0 * self.NDIM * sp.identity(self.nvertices, format='csr') + neighbours).tocsr()

    def splat(self, x):
        """Pixel values (H*W,) or (H, W) -> per-vertex sums (nvertices,)."""
        return self.S @ np.asarray(x, dtype=np.float64).reshape(-1)

    def slice(self, y):
        """Per-vertex values -> per-pixel values (H*W,)."""
        return np.asarray(y)[self.pixel_to_vertex]

    def blur(self, y):
        return self.B @ y

    def bistochastize(self, iters=10):
        """Diagonals ``(n, m)`` so that ``diag(n) B diag(n)`` has row sums ``m`` = pixels per vertex.

        This makes the bilateral affinity doubly stochastic in pixel space (every pixel has the same
        total affinity), as the paper prescribes.
        """
        m = self.splat(np.ones(self.npixels))
        n = np.ones(self.nvertices)
        for _ in range(iters):
            n = np.sqrt(n * m / self.blur(n))
        m = n * self.blur(n)
        return n, m


def _jacobi_pcg(A, b, x0, inv_diag, maxiter, tol):
    """Conjugate gradients with a Jacobi (diagonal) preconditioner.

    Stops after ``maxiter`` iterations or once ``||b - A x|| <= tol * ||b||``.
    """
    x = x0.copy()
    r = b - A @ x
    bnorm = np.linalg.norm(b)
    if bnorm == 0:
        return np.zeros_like(b)
    z = inv_diag * r
    p = z.copy()
    rz = r @ z
    for _ in range(maxiter):
        if np.linalg.norm(r) <= tol * bnorm:
            break
        Ap = A @ p
        pAp = p @ Ap
        if pAp <= 0:
            break
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        z = inv_diag * r
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def bilateral_solve(image, target, confidence=0.999, *, sigma_spatial=16, sigma_luma=16,
                    sigma_chroma=8, lam=256.0, cg_maxiter=25, cg_tol=1e-5, a_diag_min=1e-5,
                    bistoch_iters=10, grid=None, coordinates='truncate'):
    """Edge-aware smoothing of ``target`` guided by ``image`` (the fast bilateral solver).

    Args:
        image: (H, W, 3) uint8/float RGB reference image in [0, 255].
        target: (H, W) values to smooth (e.g. a 0/1 mask).
        confidence: scalar or (H, W) per-pixel confidence in the target (TokenCut: 0.999).
        sigma_spatial, sigma_luma, sigma_chroma: bilateral grid cell sizes (pixels, luma and chroma
            levels).
        lam: smoothness weight. cg_maxiter, cg_tol: conjugate-gradient stopping rule.
        a_diag_min: floor of the Jacobi preconditioner's diagonal.
        bistoch_iters: bistochastisation iterations.
        grid: an already built :class:`BilateralGrid` of ``image`` (to reuse it).
        coordinates: 'truncate' (the original TokenCut solver) or 'round': how a pixel's grid
            position becomes a vertex.

    Returns:
        (H, W) float64 solution.
    """
    image = np.asarray(image)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != image.shape[:2]:
        raise ValueError(f'target shape {target.shape} does not match image shape {image.shape[:2]}')
    if grid is None:
        grid = BilateralGrid(image, sigma_spatial, sigma_luma, sigma_chroma, coordinates)
    c = np.broadcast_to(np.asarray(confidence, dtype=np.float64), target.shape).reshape(-1)
    t = target.reshape(-1)

    n, m = grid.bistochastize(bistoch_iters)
    Dn = sp.diags(n)
    A_smooth = lam * (sp.diags(m) - Dn @ grid.B @ Dn)
    w_splat = grid.splat(c)
    A = (A_smooth + sp.diags(w_splat)).tocsr()
    b = grid.splat(c * t)
    inv_diag = 1.0 / np.maximum(A.diagonal(), a_diag_min)
    # Start from the confidence-weighted mean target of each vertex.
    y0 = b / np.maximum(w_splat, a_diag_min)
    y = _jacobi_pcg(A, b, y0, inv_diag, cg_maxiter, cg_tol)
    return grid.slice(y).reshape(target.shape)
