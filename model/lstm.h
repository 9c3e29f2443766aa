/*
 * The LSTM cell, forward for a batch of users in one SGEMM, and its backward
 * pass for the trainer. The daemon, the offline replay and interest-train all
 * run this code, so training and serving cannot drift apart.
 */
#ifndef MODEL_LSTM_H
#define MODEL_LSTM_H

#include <stdint.h>

struct model;

/* The time-gap input feature for dt_s seconds since the user's previous event. */
float lstm_gap_feature(double dt_s);

/*
 * Fills one input row x[din] = [e_item ; T[type] ; gap] (schemas/modelfile.md).
 * e_item is the model item embedding [dim], T_type the type embedding [E].
 */
void lstm_input(
    const float *e_item, uint32_t dim, const float *T_type, uint32_t type_dim, float gap, float *x);

/*
 * One step for B users. xh is [B][din+H], each row x then h_prev. c is
 * [B][H], updated in place to c'. h_out [B][H] receives h'. acts [B][4H]
 * receives the activated gates (sigmoid i, sigmoid f, tanh g, sigmoid o),
 * kept by the trainer for the backward pass. Gate pre-activations are
 * computed with one cblas_sgemm: Z = xh * W^T + b.
 */
void lstm_forward(const float *W, const float *b, uint32_t din, uint32_t hidden, uint32_t batch,
    const float *xh, float *c, float *h_out, float *acts);

/*
 * Backward through one step for B users. Given dh, dc (gradients w.r.t. h'
 * and c', [B][H]) and the forward's xh, c_prev, c_new and acts, accumulates
 * dW [4H][din+H] and db [4H], and writes dxh [B][din+H] (gradient w.r.t. the
 * step's input row: x then h_prev) and dc_prev [B][H].
 */
void lstm_backward(const float *W, uint32_t din, uint32_t hidden, uint32_t batch, const float *xh,
    const float *c_prev, const float *c_new, const float *acts, const float *dh, const float *dc,
    float *dW, float *db, float *dxh, float *dc_prev, float *scratch /* [B][4H] */);

#endif
