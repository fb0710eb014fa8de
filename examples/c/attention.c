/*
 * Captures the last layer's attention of the token being sampled, through
 * entropix's eval callback, and prints its statistics at each step.
 *
 *   attention MODEL.gguf [N_PREDICT]
 */
#define _POSIX_C_SOURCE 200809L

#include "entropix_sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "attention: %s (%s)\n", what, entropix_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [N_PREDICT]\n", argv[0]);
        return 2;
    }
    const int n_predict = argc > 2 ? atoi(argv[2]) : 8;
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (model == NULL) {
        return fail("cannot load the model");
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    entropix_attention_capture_params cp = entropix_attention_capture_default_params();
    entropix_attention_capture *cap = entropix_attention_capture_new(model, &cp);
    if (cap == NULL) {
        return fail("cannot create the capture");
    }

    struct llama_context_params params = llama_context_default_params();
    params.n_ctx = 256;
    params.no_perf = true;
    params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; /* the softmax must exist */
    params.cb_eval = entropix_attention_eval_callback;
    params.cb_eval_user_data = cap;
    const long n_cores = sysconf(_SC_NPROCESSORS_ONLN);
    params.n_threads = params.n_threads_batch = n_cores > 0 ? (int32_t) n_cores : 1;
    struct llama_context *ctx = llama_init_from_model(model, params);
    if (ctx == NULL) {
        return fail("cannot create the context");
    }

    const char *prompt = "The capital of France is";
    llama_token tokens[64];
    const int n_prompt = llama_tokenize(vocab, prompt, (int32_t) strlen(prompt), tokens, 64, true, false);
    if (n_prompt <= 0) {
        return fail("cannot tokenize");
    }
    struct llama_sampler *greedy = llama_sampler_init_greedy();
    if (entropix_sampler_set_attention(greedy, cap) == 0) {
        return fail("attaching a capture to a llama.cpp sampler must fail");
    }

    llama_batch batch = llama_batch_get_one(tokens, n_prompt);
    llama_token token;
    for (int i = 0; i < n_predict; i++) {
        if (llama_decode(ctx, batch) != 0) {
            return fail("llama_decode failed");
        }
        entropix_attention_metrics_out m;
        if (entropix_attention_capture_metrics(cap, &m) != 0) {
            return fail("no fresh attention after a decode");
        }
        printf("step %d: heads=%u valid=%u entropy_bits=%.4f head_var_bits2=%.4f varentropy_bits2=%.4f agreement=%.5f interaction=%.4f\n",
               i, m.n_head, m.n_valid, m.entropy_bits, m.head_entropy_variance_bits2, m.varentropy_bits2, m.agreement,
               m.interaction_strength);
        if (isnan(m.interaction_strength) || m.n_valid != (unsigned) (n_prompt + i)) {
            return fail("unexpected metrics");
        }
        token = llama_sampler_sample(greedy, ctx, -1);
        batch = llama_batch_get_one(&token, 1);
    }

    llama_sampler_free(greedy);
    llama_free(ctx);
    entropix_attention_capture_free(cap);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
