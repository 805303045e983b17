/* The baseline side of bench_kernels.py: llama.cpp's own vec_dot (a function
 * pointer taken from libggml-cpu.so) applied to every row of a weight matrix,
 * rows split across threads as a matmul would, so that both engines' kernels are
 * timed on the same bytes in one process. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*vec_dot_fn)(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by,
                           int nrc);

struct rows_job {
  vec_dot_fn dot;
  int n;                  /* elements per row */
  const uint8_t *w;       /* [rows][row_bytes] */
  size_t row_bytes;
  const void *act;        /* one quantized activation row */
  float *out;             /* [rows] */
  int64_t begin, end;
};

static void *rows_run(void *arg) {
  struct rows_job *job = arg;
  for (int64_t r = job->begin; r < job->end; ++r) {
    job->dot(job->n, job->out + r, 0, job->w + (size_t)r * job->row_bytes, 0, job->act, 0, 1);
  }
  return NULL;
}

/* out[r] = dot(row r, act) for r < rows, on n_threads threads (at most 16). */
int ggml_rows(void *dot, int n, const void *w, size_t row_bytes, int64_t rows, const void *act, float *out,
              int n_threads) {
  pthread_t threads[16];
  struct rows_job jobs[16];
  if (n_threads < 1 || n_threads > 16) return -1;
  for (int t = 0; t < n_threads; ++t) {
    jobs[t] = (struct rows_job){(vec_dot_fn)dot, n, w, row_bytes, act, out, rows * t / n_threads,
                                rows * (t + 1) / n_threads};
  }
  for (int t = 1; t < n_threads; ++t) pthread_create(&threads[t], NULL, rows_run, &jobs[t]);
  rows_run(&jobs[0]);
  for (int t = 1; t < n_threads; ++t) pthread_join(threads[t], NULL);
  return 0;
}
