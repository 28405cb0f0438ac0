"""Application recipes: run one from Python at a tiny size and read its results table (seconds).

    python examples/recipes.py

From the command line: `recurlab recipe gru_svm --quick` (minutes) or `recurlab recipe gru_svm`
(the full run); `recurlab recipe report` tabulates every full run under docs/results/recipes.
"""

from recurlab import recipes
from recurlab.recipes.gru_svm import Config

print("recipes:", ", ".join(recipes.names()))
gru_svm = recipes.load("gru_svm")
print(gru_svm.PAPER)
tiny = Config(n_train=2000, n_test=600, hidden_size=16, epochs=3, batch_size=100, lr=1e-2)
result = gru_svm.run(config=tiny, seed=0, progress=False)  # out_dir=None: nothing written
print(result.markdown())
