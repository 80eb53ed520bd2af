;;; emacs_harness.el --- runs docs/INTEGRATIONS.md's Emacs blocks as written  -*- lexical-binding: t -*-
;; Loads the module ($DS_MODULE) and the usage block ($DS_USAGE), records what
;; `datasource-agent-query' returned and every `message', writes them as JSON to
;; $DS_RESULT_FILE, then exits.
(require 'lisp-mnt)
(require 'find-func)

(defvar ds-harness-messages nil)
(defvar ds-harness-state (list :finished :json-false))

(defun ds-harness--record-message (format-string &rest args)
  (when format-string
    (push (apply #'format-message format-string args) ds-harness-messages)))
(advice-add 'message :before #'ds-harness--record-message)

(condition-case err
    (progn
      (load (getenv "DS_MODULE") nil t t)
      (advice-add 'datasource-agent-query :filter-return
                  (lambda (result)
                    (setq ds-harness-state (append (list :result result) ds-harness-state))
                    result))
      (with-timeout ((string-to-number (or (getenv "DS_TIMEOUT_S") "45"))
                     (error "harness timed out"))
        (load (getenv "DS_USAGE") nil t t))
      (setq ds-harness-state (plist-put ds-harness-state :finished t)))
  (error (setq ds-harness-state
               (append (list :harness_error (error-message-string err)) ds-harness-state))))

(advice-remove 'message #'ds-harness--record-message)
(setq ds-harness-state
      (append (list :output (vconcat (reverse ds-harness-messages))
                    :version emacs-version
                    :jsonrpc_version
                    (or (ignore-errors (lm-version (find-library-name "jsonrpc"))) "?"))
              ds-harness-state))
(with-temp-file (getenv "DS_RESULT_FILE")
  (insert (json-serialize ds-harness-state :null-object nil :false-object :json-false)))
(kill-emacs 0)
