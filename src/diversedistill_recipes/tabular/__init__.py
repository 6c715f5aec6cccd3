"""The user's own table: a CSV, their student class and their exported teachers, named in
YAML (:mod:`.spec`), read and split once (:mod:`.table`), and trained through the
``DataSetRecipe`` path MovieLens and CIFAR take (:mod:`.recipe`): one student
(:mod:`.table_runs`: ``distill`` / ``train-teacher --config``) or the whole comparison
(:mod:`.compare`: ``diversedistill compare``), and the suite of tasks no recipe was tuned
on (:mod:`.suite`: ``diversedistill bench suite``)."""
