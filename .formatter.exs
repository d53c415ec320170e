[
  inputs: ["{mix,.formatter}.exs", "{config,lib,test,mix,examples,bench}/**/*.{ex,exs}"]
]
