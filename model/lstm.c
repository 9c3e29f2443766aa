/*
 * The LSTM cell (schemas/modelfile.md, "Semantics"): input row, a batch
 * forward step as one SGEMM plus the gate nonlinearities, and the backward
 * step the trainer uses. Gate order i, f, g, o; W columns are x then h.
 */
#include "lstm.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* Scale of the log time-gap feature: log1p(dt/60 s) / 8 keeps a month near 1.3. */
#define LSTM_GAP_UNIT_S 60.0
#define LSTM_GAP_SCALE  8.0

float
lstm_gap_feature(double dt_s)
{
	if (!(dt_s > 0.0)) /* negative, zero or NaN: no gap */
		return 0.0f;
	return (float)(log1p(dt_s / LSTM_GAP_UNIT_S) / LSTM_GAP_SCALE);
}

void
lstm_input(
    const float *e_item, uint32_t dim, const float *T_type, uint32_t type_dim, float gap, float *x)
{
	memcpy(x, e_item, (size_t)dim * sizeof(float));
	memcpy(x + dim, T_type, (size_t)type_dim * sizeof(float));
	x[dim + type_dim] = gap;
}

static float
lstm_sigmoid(float z)
{
	return 1.0f / (1.0f + expf(-z));
}

void
lstm_forward(const float *W, const float *b, uint32_t din, uint32_t hidden, uint32_t batch,
    const float *xh, float *c, float *h_out, float *acts)
{
	size_t H = hidden, G = 4 * (size_t)hidden, K = (size_t)din + hidden;

	if (batch == 0)
		return;
	/* acts = b broadcast, then acts += xh * W^T: one SGEMM for the batch. */
	for (size_t r = 0; r < batch; r++)
		memcpy(acts + r * G, b, G * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)batch, (int)G, (int)K, 1.0f, xh,
	    (int)K, W, (int)K, 1.0f, acts, (int)G);

	for (size_t r = 0; r < batch; r++) {
		float *a = acts + r * G;
		float *cr = c + r * H;
		float *hr = h_out + r * H;
		for (size_t k = 0; k < H; k++) {
			float ig = lstm_sigmoid(a[k]);
			float fg = lstm_sigmoid(a[H + k]);
			float gg = tanhf(a[2 * H + k]);
			float og = lstm_sigmoid(a[3 * H + k]);
			float cn = fg * cr[k] + ig * gg;
			a[k] = ig;
			a[H + k] = fg;
			a[2 * H + k] = gg;
			a[3 * H + k] = og;
			cr[k] = cn;
			hr[k] = og * tanhf(cn);
		}
	}
}

void
lstm_backward(const float *W, uint32_t din, uint32_t hidden, uint32_t batch, const float *xh,
    const float *c_prev, const float *c_new, const float *acts, const float *dh, const float *dc,
    float *dW, float *db, float *dxh, float *dc_prev, float *scratch)
{
	size_t H = hidden, G = 4 * (size_t)hidden, K = (size_t)din + hidden;

	if (batch == 0)
		return;
	/* Gate pre-activation gradients dZ into scratch; dc_prev may alias dc. */
	for (size_t r = 0; r < batch; r++) {
		const float *a = acts + r * G;
		float *dz = scratch + r * G;
		for (size_t k = 0; k < H; k++) {
			size_t j = r * H + k;
			float ig = a[k], fg = a[H + k], gg = a[2 * H + k], og = a[3 * H + k];
			float tc = tanhf(c_new[j]);
			float dct = dc[j] + dh[j] * og * (1.0f - tc * tc);
			dz[k] = dct * gg * ig * (1.0f - ig);
			dz[H + k] = dct * c_prev[j] * fg * (1.0f - fg);
			dz[2 * H + k] = dct * ig * (1.0f - gg * gg);
			dz[3 * H + k] = dh[j] * tc * og * (1.0f - og);
			dc_prev[j] = dct * fg;
		}
	}
	/* db += column sums of dZ, rows in order (deterministic). */
	for (size_t r = 0; r < batch; r++) {
		const float *dz = scratch + r * G;
		for (size_t k = 0; k < G; k++)
			db[k] += dz[k];
	}
	/* dW += dZ^T xh;  dxh = dZ W. */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)G, (int)K, (int)batch, 1.0f,
	    scratch, (int)G, xh, (int)K, 1.0f, dW, (int)K);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)batch, (int)K, (int)G, 1.0f,
	    scratch, (int)G, W, (int)K, 0.0f, dxh, (int)K);
}
